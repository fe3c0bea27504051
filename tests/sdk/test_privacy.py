"""Personal data: GB 11643 resident IDs, mainland mobiles, keyed pseudonyms, sealing at rest, redaction."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tanpuhui.sdk import (
    PrivacyError,
    Pseudonymiser,
    is_valid_resident_id,
    normalise_mobile,
    normalise_resident_id,
    redact,
)

KEY_V1 = bytes.fromhex("8a1f3c5e7d9b0a2c4e6f8d1b3a5c7e9f0b2d4f6a8c1e3b5d7f9a0c2e4b6d8f1a")
KEY_V2 = bytes.fromhex("2b4d6f8a0c1e3b5d7f9a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d1f2a4c6e8b0d")
SPEC = f"v2:{base64.b64encode(KEY_V2).decode()},v1:{base64.b64encode(KEY_V1).decode()}"

VALID_IDS = ["11010519491231002X", "440524188001010014", "34052419800101001X"]


@pytest.fixture
def hub_keys() -> Pseudonymiser:
    return Pseudonymiser({"v1": KEY_V1}, "v1")


# -- resident identity numbers (GB 11643) ------------------------------------------------------------------


@pytest.mark.parametrize("resident_id", VALID_IDS)
def test_resident_ids_from_the_standard_are_valid(resident_id: str) -> None:
    assert is_valid_resident_id(resident_id)


@pytest.mark.parametrize("resident_id", VALID_IDS)
def test_every_other_check_character_is_invalid(resident_id: str) -> None:
    for check in "0123456789X":
        if check != resident_id[-1]:
            assert not is_valid_resident_id(resident_id[:-1] + check), resident_id[:-1] + check


@pytest.mark.parametrize("position", [0, 3, 5, 9, 13, 16])
def test_changing_one_digit_of_the_body_breaks_the_check(position: int) -> None:
    valid = "34052419800101001X"
    digit = valid[position]
    changed = valid[:position] + str((int(digit) + 1) % 10 or 1) + valid[position + 1 :]
    assert not is_valid_resident_id(changed)


def test_lower_case_x_check_character_is_accepted_and_upper_cased() -> None:
    assert is_valid_resident_id("34052419800101001x")
    assert normalise_resident_id(" 34052419800101001x ") == "34052419800101001X"


@pytest.mark.parametrize(
    "value",
    ["3405241980010100", "340524198013010017", "340524198001320012", "34052419800101001Y", "040524198001010013"],
    ids=["too short", "month 13", "day 32", "check Y", "region starting with 0"],
)
def test_wrong_shapes_are_not_resident_ids(value: str) -> None:
    assert not is_valid_resident_id(value)


def test_invalid_resident_id_message_hides_the_birth_date(hub_keys: Pseudonymiser) -> None:
    with pytest.raises(PrivacyError) as info:
        hub_keys.pseudonym("resident_id", "340524198001010013")
    message = str(info.value)
    assert "340524198001010013" not in message
    assert "19800101" not in message
    assert "340524********0013" in message


def test_resident_id_pseudonym_ignores_case_and_spaces(hub_keys: Pseudonymiser) -> None:
    assert hub_keys.pseudonym("resident_id", " 11010519491231002x") == hub_keys.pseudonym(
        "resident_id", "11010519491231002X"
    )


# -- mobile numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["+86 138-0013-8000", "0086 13800138000", "138 0013 8000", "8613800138000"])
def test_mobile_numbers_are_normalised_before_hashing(written: str, hub_keys: Pseudonymiser) -> None:
    assert normalise_mobile(written) == "13800138000"
    assert hub_keys.pseudonym("mobile", written) == hub_keys.pseudonym("mobile", "13800138000")


@pytest.mark.parametrize(
    "value, clear",
    [
        ("12800138000", "12800138000"),
        ("+86 128-0013-8000", "12800138000"),
        ("1380013800", "1380013800"),
        ("138001380001", "138001380001"),
        ("0551-6288-1234", "055162881234"),
    ],
    ids=["second digit 2", "second digit 2 with +86", "10 digits", "12 digits", "Hefei landline"],
)
def test_invalid_mobile_is_rejected_without_showing_the_number(value: str, clear: str) -> None:
    with pytest.raises(PrivacyError) as info:
        normalise_mobile(value)
    message = str(info.value)
    assert clear not in message
    assert value not in message
    assert "*" in message


# -- keyed pseudonyms -----------------------------------------------------------------------------------------


def test_pseudonym_is_64_lower_case_hex(hub_keys: Pseudonymiser) -> None:
    pseudonym = hub_keys.pseudonym("mobile", "13800138000")
    assert len(pseudonym) == 64
    assert pseudonym == pseudonym.lower()
    int(pseudonym, 16)


def test_pseudonym_is_not_a_plain_hash(hub_keys: Pseudonymiser) -> None:
    # A plain SHA-256 of a phone number is reversed by trying the ~7e9 mainland numbers.
    pseudonym = hub_keys.pseudonym("mobile", "13800138000")
    assert pseudonym != hashlib.sha256(b"13800138000").hexdigest()
    assert pseudonym != hashlib.sha256(b"mobile:13800138000").hexdigest()


def test_pseudonym_depends_on_the_key() -> None:
    one = Pseudonymiser({"v1": KEY_V1}, "v1").pseudonym("mobile", "13800138000")
    other = Pseudonymiser({"v1": KEY_V2}, "v1").pseudonym("mobile", "13800138000")
    assert one != other


def test_pseudonym_is_stable_for_one_key(hub_keys: Pseudonymiser) -> None:
    again = Pseudonymiser({"v1": KEY_V1}, "v1")
    assert hub_keys.pseudonym("card", "3401010012345678") == again.pseudonym("card", "3401010012345678")


def test_same_value_of_different_kinds_gives_different_pseudonyms(hub_keys: Pseudonymiser) -> None:
    assert hub_keys.pseudonym("card", "13800138000") != hub_keys.pseudonym("mobile", "13800138000")


def test_empty_card_number_is_rejected(hub_keys: Pseudonymiser) -> None:
    with pytest.raises(PrivacyError, match="empty card"):
        hub_keys.pseudonym("card", "   ")


def test_key_version_is_carried(hub_keys: Pseudonymiser) -> None:
    assert hub_keys.key_version == "v1"


def test_first_key_of_a_rotation_spec_is_current() -> None:
    keys = Pseudonymiser.parse(SPEC)
    assert keys.key_version == "v2"
    assert keys.pseudonym("mobile", "13800138000") == Pseudonymiser({"v2": KEY_V2}, "v2").pseudonym(
        "mobile", "13800138000"
    )


def test_previous_key_still_gives_its_pseudonyms_after_rotation(hub_keys: Pseudonymiser) -> None:
    rotated = Pseudonymiser.parse(SPEC)
    assert rotated.pseudonym("mobile", "13800138000", key_version="v1") == hub_keys.pseudonym("mobile", "13800138000")


def test_a_remembered_pseudonym_is_the_computed_one_under_each_key_and_a_bad_identifier_is_never_remembered() -> None:
    rotated = Pseudonymiser.parse(SPEC)
    first = [rotated.pseudonym("mobile", "+86 138-0013-8000") for _ in range(3)]  # computed once, then remembered
    assert first == [Pseudonymiser({"v2": KEY_V2}, "v2").pseudonym("mobile", "13800138000")] * 3
    old = rotated.pseudonym("mobile", "+86 138-0013-8000", key_version="v1")
    assert old == Pseudonymiser({"v1": KEY_V1}, "v1").pseudonym("mobile", "13800138000") != first[0]
    assert rotated.pseudonym("card", "+86 138-0013-8000") != first[0]  # the kind is part of what is remembered
    for _ in range(2):
        with pytest.raises(PrivacyError, match="not a valid GB 11643"):
            rotated.pseudonym("resident_id", "110105194912310021")  # check character wrong


def test_unknown_key_version_for_a_pseudonym_is_a_privacy_error(hub_keys: Pseudonymiser) -> None:
    with pytest.raises(PrivacyError, match="v9"):
        hub_keys.pseudonym("mobile", "13800138000", key_version="v9")


def test_key_shorter_than_16_bytes_is_rejected() -> None:
    with pytest.raises(PrivacyError, match="15 bytes"):
        Pseudonymiser({"v1": b"anhui-hub-2024!"}, "v1")


def test_short_key_in_a_spec_is_rejected() -> None:
    with pytest.raises(PrivacyError, match="at least 16"):
        Pseudonymiser.parse("v1:" + base64.b64encode(b"short").decode())


def test_spec_entry_without_version_is_rejected() -> None:
    with pytest.raises(PrivacyError, match="VERSION:BASE64"):
        Pseudonymiser.parse(base64.b64encode(KEY_V1).decode())


def test_spec_with_bad_base64_names_the_key() -> None:
    with pytest.raises(PrivacyError, match="'v1' is not valid base64"):
        Pseudonymiser.parse("v1:not base64!!")


def test_from_env_without_the_variable_says_how_to_make_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANPUHUI_PSEUDONYM_KEYS", raising=False)
    with pytest.raises(PrivacyError, match=r"os\.urandom"):
        Pseudonymiser.from_env()


def test_from_env_reads_the_rotation_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANPUHUI_PSEUDONYM_KEYS", SPEC)
    assert Pseudonymiser.from_env().key_version == "v2"


# -- sealing raw payloads at rest -----------------------------------------------------------------------------

RAW = b'{"trip_id": "HF-M1-20240501-000123", "mobile": "13800138000", "km": 8.4}'


def test_seal_and_unseal_round_trip(hub_keys: Pseudonymiser) -> None:
    sealed = hub_keys.seal(RAW)
    assert b"13800138000" not in sealed
    assert hub_keys.unseal(sealed) == RAW


def test_sealing_twice_gives_different_ciphertexts(hub_keys: Pseudonymiser) -> None:
    assert hub_keys.seal(RAW) != hub_keys.seal(RAW)


def test_tampered_sealed_data_is_detected(hub_keys: Pseudonymiser) -> None:
    sealed = bytearray(hub_keys.seal(RAW))
    sealed[-20] ^= 0x01
    with pytest.raises(PrivacyError, match="does not authenticate"):
        hub_keys.unseal(bytes(sealed))


def test_data_sealed_with_an_unknown_key_version_is_refused(hub_keys: Pseudonymiser) -> None:
    sealed = Pseudonymiser({"v3": KEY_V2}, "v3").seal(RAW)
    with pytest.raises(PrivacyError, match="'v3'"):
        hub_keys.unseal(sealed)


def test_data_sealed_before_a_rotation_still_unseals(hub_keys: Pseudonymiser) -> None:
    sealed = hub_keys.seal(RAW)
    assert Pseudonymiser.parse(SPEC).unseal(sealed) == RAW


def test_same_version_name_with_another_secret_does_not_unseal(hub_keys: Pseudonymiser) -> None:
    sealed = hub_keys.seal(RAW)
    with pytest.raises(PrivacyError, match="does not authenticate"):
        Pseudonymiser({"v1": KEY_V2}, "v1").unseal(sealed)


@pytest.mark.parametrize("blob", [b"", b"\x02v1", b"\x02\xff\xfe" + bytes(40)], ids=["empty", "truncated", "not utf-8"])
def test_garbage_instead_of_sealed_data_is_a_privacy_error(blob: bytes, hub_keys: Pseudonymiser) -> None:
    with pytest.raises(PrivacyError):
        hub_keys.unseal(blob)


# -- redaction of free text -----------------------------------------------------------------------------------


def test_redact_masks_a_resident_id_in_a_message() -> None:
    text = redact("trip HF-M1-000123: resident 34052419800101001X has no linked account")
    assert "34052419800101001X" not in text
    assert "340524********001X" in text


def test_redact_masks_a_lower_case_x_resident_id() -> None:
    assert "34052419800101001x" not in redact("id=34052419800101001x;")


@pytest.mark.parametrize("written", ["13800138000", "+86 138-0013-8000", "0086 13800138000", "138 0013 8000"])
def test_redact_masks_mobile_numbers_however_written(written: str) -> None:
    text = redact(f"手机 {written} 已绑定合肥通卡")
    assert "0013" not in text
    assert "8000" in text


def test_redact_masks_a_mobile_glued_to_chinese_text() -> None:
    assert redact("用户13800138000乘坐地铁1号线") == "用户138****8000乘坐地铁1号线"


def test_redact_leaves_card_numbers_amounts_and_timestamps_alone() -> None:
    text = "card 6222021234567890 paid 380 fen at 1714557600000, order 202405010812001234567"
    assert redact(text) == text
