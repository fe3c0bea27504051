"""Gateway responses: error codes and what the client does with them, envelopes, and SM4-sealed payloads.

The envelope shapes, the code actions and the sealed-payload format are documented in :mod:`tanpuhui.sdk.gateway`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import orjson

from ..errors import PartnerResponseError
from ..gm import SM4_BLOCK, GMError, hmac_sm3, sm4_decrypt_cbc, sm4_encrypt_cbc

__all__ = ["DEFAULT_CODES", "CodeAction", "Envelope", "PayloadCipher", "parse_envelope"]


class CodeAction(StrEnum):
    """What the client does with a gateway error code."""

    RETRY = "retry"
    """Transient (busy, rate limited, upstream timeout): back off and repeat."""
    REAUTH = "reauth"
    """The access token expired or is unknown: fetch a new one once and repeat."""
    AUTH = "auth"
    """Our credentials or permissions are refused: PartnerAuthError."""
    FAIL = "fail"
    """The request is wrong or the dataset unknown: PartnerResponseError."""


DEFAULT_CODES: Mapping[str, tuple[CodeAction, str]] = {
    "1001": (CodeAction.RETRY, "system busy"),
    "1002": (CodeAction.RETRY, "rate limited"),
    "1003": (CodeAction.RETRY, "upstream service timeout"),
    "2001": (CodeAction.REAUTH, "access token expired"),
    "2002": (CodeAction.REAUTH, "access token invalid"),
    "3001": (CodeAction.AUTH, "signature invalid"),
    "3002": (CodeAction.AUTH, "timestamp outside the replay window (check the host clock)"),
    "3003": (CodeAction.RETRY, "nonce already used"),
    "3004": (CodeAction.AUTH, "unknown app key"),
    "3005": (CodeAction.AUTH, "signature method not accepted"),
    "4001": (CodeAction.AUTH, "no permission for this dataset"),
    "4002": (CodeAction.FAIL, "bad parameter"),
    "4004": (CodeAction.FAIL, "dataset not found"),
    "400": (CodeAction.FAIL, "bad request"),
    "401": (CodeAction.REAUTH, "unauthorized"),
    "403": (CodeAction.AUTH, "forbidden"),
    "404": (CodeAction.FAIL, "not found"),
    "429": (CodeAction.RETRY, "too many requests"),
    "500": (CodeAction.RETRY, "internal error"),
    "502": (CodeAction.RETRY, "bad gateway"),
    "503": (CodeAction.RETRY, "service unavailable"),
    "504": (CodeAction.RETRY, "gateway timeout"),
}
"""Error codes seen on Chinese government gateways (and HTTP-like codes inside envelopes), with what they mean.

Modelled on the conventions seen on such gateways (no public specification was found): a real gateway's document
rules; override per code with ``GatewayConfig(code_actions={"E0401": CodeAction.REAUTH})``."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed gateway response: ``{code, msg, data}`` or ``{flag, msg, data}``."""

    style: Literal["code", "flag"]
    code: str
    msg: str
    data: Any
    ok: bool
    doc: Mapping[str, Any]

    @property
    def sealed(self) -> bool:
        """Whether the data is SM4-sealed (an ``encType`` or a ``data.encData``): :class:`PayloadCipher` opens it."""
        data = self.doc.get("data")
        return "encType" in self.doc or (isinstance(data, dict) and "encData" in data)


def parse_envelope(doc: Any, success_codes: frozenset[str] = frozenset({"0000", "200"})) -> Envelope | None:
    """The envelope of a response document, or None when it is neither shape."""
    if not isinstance(doc, dict):
        return None
    if "code" in doc:
        style: Literal["code", "flag"] = "code"
        raw = doc["code"]
    elif "flag" in doc:
        style, raw = "flag", doc["flag"]
    else:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    code = str(raw)
    msg = doc.get("msg", doc.get("message", ""))
    return Envelope(style, code, str(msg) if msg is not None else "", doc.get("data"), code in success_codes, doc)


class PayloadCipher:
    """SM4-CBC sealed, HMAC-SM3 tagged payloads (the format is described in :mod:`tanpuhui.sdk.gateway`).

    ``sm4_key`` is 16 bytes; ``mac_key`` at least 16 bytes and different from the SM4 key.
    """

    ENC_TYPE = "SM4"
    SIGN_TYPE = "HMAC-SM3"

    def __init__(self, sm4_key: bytes, mac_key: bytes) -> None:
        if len(sm4_key) != 16:
            raise GMError(f"SM4 key must be 16 bytes (32 hex characters), got {len(sm4_key)} bytes")
        if len(mac_key) < 16:
            raise GMError(f"MAC key must be at least 16 bytes, got {len(mac_key)} bytes")
        if hmac.compare_digest(sm4_key, mac_key):
            raise GMError("the MAC key must differ from the SM4 key")
        self._key = sm4_key
        self._mac = mac_key

    @classmethod
    def from_hex(cls, sm4_key: str, mac_key: str) -> PayloadCipher:
        """Keys given as hex strings (how gateway documents hand them out)."""
        keys = []
        for name, text in (("SM4 key", sm4_key), ("MAC key", mac_key)):
            try:
                keys.append(bytes.fromhex(text.strip()))
            except ValueError:
                raise GMError(f"{name} must be a hex string") from None
        return cls(keys[0], keys[1])

    def tag(self, enc_data: str) -> str:
        """``signData``: hex HMAC-SM3 of the ``encData`` text."""
        return hmac_sm3(self._mac, enc_data.encode("ascii")).hex()

    def seal(self, data: Any, *, iv: bytes | None = None) -> dict[str, Any]:
        """The sealed fields for a response carrying ``data`` (merge them into an envelope)."""
        iv = os.urandom(SM4_BLOCK) if iv is None else iv
        ciphertext = sm4_encrypt_cbc(self._key, iv, orjson.dumps(data))
        enc_data = base64.b64encode(iv + ciphertext).decode()
        return {
            "data": {"encData": enc_data},
            "encType": self.ENC_TYPE,
            "signType": self.SIGN_TYPE,
            "signData": self.tag(enc_data),
        }

    def open(self, doc: Mapping[str, Any], where: str = "sealed payload") -> Any:
        """Verify the tag, decrypt and parse; :class:`PartnerResponseError` prefixed with ``where`` on any failure."""
        enc_type, sign_type = doc.get("encType"), doc.get("signType")
        if enc_type != self.ENC_TYPE:
            raise PartnerResponseError(f"{where}: encType {enc_type!r} is not supported (expected {self.ENC_TYPE!r})")
        if sign_type != self.SIGN_TYPE:
            raise PartnerResponseError(
                f"{where}: signType {sign_type!r} is not supported (expected {self.SIGN_TYPE!r}); nothing was decrypted"
            )
        data = doc.get("data")
        enc_data = data.get("encData") if isinstance(data, dict) else None
        sign_data = doc.get("signData")
        if not isinstance(enc_data, str) or not enc_data.isascii():
            raise PartnerResponseError(f"{where}: /data/encData is missing or not a base64 string")
        if not isinstance(sign_data, str):
            raise PartnerResponseError(f"{where}: /signData is missing; an unauthenticated payload is not decrypted")
        try:
            offered = bytes.fromhex(sign_data)
        except ValueError:
            raise PartnerResponseError(f"{where}: /signData is not hex") from None
        if not hmac.compare_digest(bytes.fromhex(self.tag(enc_data)), offered):
            raise PartnerResponseError(
                f"{where}: integrity tag (signData, {self.SIGN_TYPE}) does not verify: the payload was altered in "
                "transit or the configured MAC key is not the gateway's; nothing was decrypted"
            )
        try:
            blob = base64.b64decode(enc_data, validate=True)
        except (binascii.Error, ValueError):
            raise PartnerResponseError(f"{where}: /data/encData is not valid base64") from None
        if len(blob) < 2 * SM4_BLOCK or len(blob) % SM4_BLOCK:
            raise PartnerResponseError(
                f"{where}: /data/encData holds {len(blob)} bytes; expected a 16-byte IV and whole 16-byte blocks"
            )
        try:
            clear = sm4_decrypt_cbc(self._key, blob[:SM4_BLOCK], blob[SM4_BLOCK:])
            return orjson.loads(clear)
        except GMError as exc:
            raise PartnerResponseError(f"{where}: the tag verified but {exc} (is the SM4 key the gateway's?)") from None
        except orjson.JSONDecodeError:
            raise PartnerResponseError(
                f"{where}: the tag verified but the decrypted data is not JSON (is the SM4 key the gateway's?)"
            ) from None
