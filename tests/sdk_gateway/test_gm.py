"""SM3, HMAC-SM3 and SM4 against published test vectors (the examples of GB/T 32905-2016 and GB/T 32907-2016, and
SM4 ECB/CBC vectors), and the failure modes that must be loud."""

from __future__ import annotations

import hashlib
import os

import pytest

from tanpuhui.sdk import gm
from tanpuhui.sdk.gm import (
    GMError,
    hmac_sm3,
    sm3,
    sm3_hex,
    sm4_decrypt_cbc,
    sm4_decrypt_ecb,
    sm4_encrypt_cbc,
    sm4_encrypt_ecb,
)

KEY_A = bytes.fromhex("0123456789abcdeffedcba9876543210")
KEY_B = bytes.fromhex("fedcba98765432100123456789abcdef")
TWO_BLOCKS = bytes.fromhex("aaaaaaaabbbbbbbbccccccccddddddddeeeeeeeeffffffffaaaaaaaabbbbbbbb")
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def test_sm3_of_abc_matches_the_standard_vector() -> None:
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_of_abcd_times_16_matches_the_standard_vector() -> None:
    expected = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert sm3_hex(b"abcd" * 16) == expected
    assert sm3(b"abcd" * 16) == bytes.fromhex(expected)


def test_sm4_single_block_with_key_as_plaintext_matches_the_standard_vector() -> None:
    ciphertext = sm4_encrypt_ecb(KEY_A, KEY_A, padding=False)
    assert ciphertext.hex() == "681edf34d206965e86b3e94f536e4246"
    assert sm4_decrypt_ecb(KEY_A, ciphertext, padding=False) == KEY_A


@pytest.mark.parametrize(
    ("key", "ecb", "cbc"),
    [
        (
            KEY_A,
            "5ec8143de509cff7b5179f8f474b86192f1d305a7fb17df985f81c8482192304",
            "78ebb11cc40b0a48312aaeb2040244cb4cb7016951909226979b0d15dc6a8f6d",
        ),
        (
            KEY_B,
            "c5876897e4a59bbba72a10c83872245b12dd90bc2d200692b529a4155ac9e600",
            "0d3a6ddc2d21c698857215587b7bb59a91f2c147911a4144665e1fa1d40bae38",
        ),
    ],
    ids=["key-0123", "key-fedc"],
)
def test_sm4_ecb_and_cbc_without_padding_match_the_standard_vectors(key: bytes, ecb: str, cbc: str) -> None:
    assert sm4_encrypt_ecb(key, TWO_BLOCKS, padding=False).hex() == ecb
    assert sm4_encrypt_cbc(key, IV, TWO_BLOCKS, padding=False).hex() == cbc
    assert sm4_decrypt_ecb(key, bytes.fromhex(ecb), padding=False) == TWO_BLOCKS
    assert sm4_decrypt_cbc(key, IV, bytes.fromhex(cbc), padding=False) == TWO_BLOCKS


def test_hmac_sm3_is_rfc_2104_over_sm3() -> None:
    # HMAC built by hand from its definition (64-byte blocks), independent of hmac.new(..., "sm3").
    key, message = b"tanpuhui-gateway-mac-key", "合肥 peak-hour water 0.142 m3".encode()
    block = key.ljust(64, b"\0")
    inner = hashlib.new("sm3", bytes(b ^ 0x36 for b in block) + message).digest()
    expected = hashlib.new("sm3", bytes(b ^ 0x5C for b in block) + inner).digest()
    assert hmac_sm3(key, message) == expected


def test_hmac_sm3_hashes_keys_longer_than_a_block_first() -> None:
    key = os.urandom(100)
    short = hashlib.new("sm3", key).digest()
    assert hmac_sm3(key, b"m") == hmac_sm3(short, b"m")


def test_cbc_with_padding_round_trips_any_length() -> None:
    for size in (0, 1, 15, 16, 17, 4096):
        data = os.urandom(size)
        ciphertext = sm4_encrypt_cbc(KEY_A, IV, data)
        assert len(ciphertext) == (size // 16 + 1) * 16
        assert sm4_decrypt_cbc(KEY_A, IV, ciphertext) == data


def test_ecb_with_padding_adds_a_whole_block_to_aligned_input() -> None:
    ciphertext = sm4_encrypt_ecb(KEY_A, KEY_A)
    assert ciphertext[:16].hex() == "681edf34d206965e86b3e94f536e4246"
    assert len(ciphertext) == 32
    assert sm4_decrypt_ecb(KEY_A, ciphertext) == KEY_A


def test_decrypting_with_the_wrong_key_fails_the_padding_check_instead_of_returning_garbage() -> None:
    plaintext = b'{"records": [{"recordId": "WU-340100-000017-20241105", "peakUsageM3": 0.142}]}'
    ciphertext = sm4_encrypt_cbc(KEY_A, IV, plaintext)
    with pytest.raises(GMError, match="invalid PKCS#7 padding"):
        sm4_decrypt_cbc(KEY_B, IV, ciphertext)


def test_an_altered_last_block_fails_the_padding_check() -> None:
    ciphertext = bytearray(sm4_encrypt_ecb(KEY_A, b"0.142 m3"))
    ciphertext[-1] ^= 0x01
    with pytest.raises(GMError, match="padding"):
        sm4_decrypt_ecb(KEY_A, bytes(ciphertext))


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_keys_that_are_not_16_bytes_are_refused(size: int) -> None:
    with pytest.raises(GMError, match="SM4 key must be 16 bytes"):
        sm4_encrypt_cbc(bytes(size), IV, b"x")


def test_an_iv_that_is_not_16_bytes_is_refused() -> None:
    with pytest.raises(GMError, match="IV must be 16 bytes"):
        sm4_decrypt_cbc(KEY_A, IV[:8], bytes(16))


def test_ciphertext_that_is_not_whole_blocks_is_refused() -> None:
    with pytest.raises(GMError, match="not a multiple of 16"):
        sm4_decrypt_cbc(KEY_A, IV, bytes(20))


def test_unpadded_encryption_of_partial_blocks_is_refused() -> None:
    with pytest.raises(GMError, match="not a multiple of 16"):
        sm4_encrypt_ecb(KEY_A, b"short", padding=False)


def test_empty_ciphertext_is_refused_when_padding_is_expected() -> None:
    with pytest.raises(GMError, match="empty"):
        sm4_decrypt_cbc(KEY_A, IV, b"")


def test_an_empty_hmac_key_is_refused() -> None:
    with pytest.raises(GMError, match="key is empty"):
        hmac_sm3(b"", b"message")


def test_a_missing_sm3_gives_a_clear_error_naming_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashlib, "algorithms_available", set(hashlib.algorithms_available) - {"sm3"})
    assert not gm.sm3_available()
    with pytest.raises(GMError, match=r"SM3 is not available.*OpenSSL"):
        sm3_hex(b"abc")
    with pytest.raises(GMError, match="SM3 is not available"):
        hmac_sm3(b"key", b"abc")
