"""Recorded traffic loses its secrets and personal identifiers, and stays replayable and stable."""

from __future__ import annotations

from tanpuhui.sdk import is_valid_resident_id
from tanpuhui.testing import Scrubber, identifiers_in, is_secret_key, personal_fields

VALID_RID = "340104198706150015"
INVALID_RID = "340104198706150018"


def test_token_responses_lose_their_tokens_but_keep_their_type_and_lifetime() -> None:
    doc = {"access_token": "eyJhbGciOi.secret", "refresh_token": "r-77", "token_type": "Bearer", "expires_in": 1800}
    out = Scrubber().scrub_json(doc)
    assert out == {
        "access_token": "scrubbed-access-token-1",
        "refresh_token": "scrubbed-refresh-token-1",
        "token_type": "Bearer",
        "expires_in": 1800,
    }


def test_gateway_style_token_fields_and_app_secrets_are_scrubbed_anywhere() -> None:
    doc = {"code": "0000", "data": {"accessToken": "tk-1", "appSecret": "s", "client_secret": "c", "sign": "x"}}
    data = Scrubber().scrub_json(doc)["data"]
    assert data == {
        "accessToken": "scrubbed-access-token-1",
        "appSecret": "scrubbed-app-secret-1",
        "client_secret": "scrubbed-client-secret-1",
        "sign": "scrubbed-sign-1",
    }


def test_paging_cursors_are_not_secrets() -> None:
    assert not is_secret_key("next_page_token") and not is_secret_key("nextCursor")
    assert is_secret_key("X-Ca-Signature") and is_secret_key("webhook-signature") and is_secret_key("Authorization")


def test_the_same_token_gets_the_same_placeholder() -> None:
    scrubber = Scrubber()
    first = scrubber.scrub_json({"access_token": "t-a"})
    again = scrubber.scrub_json({"access_token": "t-a"})
    other = scrubber.scrub_json({"access_token": "t-b"})
    assert first == again != other


def test_a_valid_resident_id_becomes_a_valid_fake_with_the_same_region() -> None:
    fake = Scrubber().scrub_text(f"id {VALID_RID} end").split()[1]
    assert fake != VALID_RID and fake[:6] == "340104" and is_valid_resident_id(fake)


def test_an_invalid_resident_id_stays_invalid_so_its_rejection_still_replays() -> None:
    fake = Scrubber().scrub_text(INVALID_RID)
    assert fake != INVALID_RID and not is_valid_resident_id(fake)


def test_every_spelling_of_a_mobile_number_becomes_the_same_fake() -> None:
    scrubber = Scrubber()
    plain = scrubber.scrub_text("13800138000")
    spaced = scrubber.scrub_text("+86 138-0013-8000")
    assert plain == spaced == "17000000001"


def test_fakes_are_assigned_in_order_of_appearance() -> None:
    a, b = Scrubber(), Scrubber()
    for scrubber in (a, b):
        scrubber.scrub_text("13912345678 then 13800138000")
    assert a.scrub_text("13800138000") == b.scrub_text("13800138000") == "17000000002"


def test_personal_fields_keep_their_shape_and_their_joins() -> None:
    scrubber = Scrubber({"card_no": "card"})
    one = scrubber.scrub_json({"card_no": "9900000123456789"})["card_no"]
    same = scrubber.scrub_json({"card_no": "9900000123456789"})["card_no"]
    qr = scrubber.scrub_json({"card_no": "QR00123456789"})["card_no"]
    assert one == same != "9900000123456789" and len(one) == 16 and one.isdigit()
    assert qr.startswith("QR") and len(qr) == 13 and qr != "QR00123456789"


def test_identifiers_in_urls_are_replaced_and_secret_parameters_ignored_in_matching() -> None:
    scrubber = Scrubber()
    url = scrubber.scrub_url(f"https://p.example/v1/people/{VALID_RID}?mobile=13800138000&sign=abc&page=2")
    assert VALID_RID not in url and "13800138000" not in url and "sign=scrubbed" in url and "page=2" in url
    assert scrubber.scrubbed_query == {"sign"}


def test_timestamps_and_signatures_leave_the_headers() -> None:
    headers = [
        ("Date", "Tue, 05 Nov 2024 08:00:00 GMT"),
        ("Server", "uvicorn"),
        ("Retry-After", "3"),
        ("webhook-signature", "v1,abc"),
        ("X-Ca-Signature", "abc"),
        ("Set-Cookie", "session=1"),
        ("cache-control", "no-store"),
    ]
    assert Scrubber().scrub_headers(headers) == {"Retry-After": "3", "Cache-Control": "no-store"}


def test_personal_fields_are_found_in_nested_schemas() -> None:
    schema = {"properties": {"buyer": {"type": "object", "properties": {"idNo": {"x-personal-data": "resident_id"}}}}}
    assert personal_fields([schema]) == {"idNo": "resident_id"}


def test_hashes_are_not_taken_for_mobile_numbers() -> None:
    assert identifiers_in("202411041600:peak_gas_saving:c4062e60f04e5bc19692061916ab1e65") == []
    assert identifiers_in("call 13800138000") == ["13800138000"]
