"""Chinese commercial cryptography (国密) primitives: SM3 hashing, HMAC-SM3, SM4 in ECB and CBC modes.

Government gateways sign requests with HMAC-SM3 and encrypt payloads with SM4. This module wraps what the
platform already provides: OpenSSL 3 implements SM3 (``hashlib.new("sm3")``, ``hmac.new(key, msg, "sm3")``) and
``cryptography`` implements SM4 in C. There is no pure-Python fallback on purpose (``gmssl`` is slow, changed its
padding between releases and does not check padding on decrypt).

Padding is PKCS#7 (16-byte blocks) unless ``padding=False``; decryption *checks* it, so a wrong key or altered
ciphertext is a :class:`GMError` in most cases instead of garbage. A padding check is not an integrity check: when
ciphertext can be altered in transit, authenticate it first (e.g. HMAC-SM3 over it, compared with
:func:`hmac.compare_digest`) and decrypt only what authenticates — :class:`tanpuhui.sdk.gateway.PayloadCipher`
does exactly that.

    sm3_hex(b"abc")                                  # 66c7f0f4...
    hmac_sm3(key, b"message")                        # 32 bytes
    ct = sm4_encrypt_cbc(key, iv, b"plaintext")      # PKCS#7 padded
    sm4_decrypt_cbc(key, iv, ct)                     # b"plaintext"; GMError on bad padding
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import padding as _padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import TanpuhuiError

__all__ = [
    "SM4_BLOCK",
    "SM4_KEY_SIZE",
    "GMError",
    "hmac_sm3",
    "sm3",
    "sm3_available",
    "sm3_hex",
    "sm4_decrypt_cbc",
    "sm4_decrypt_ecb",
    "sm4_encrypt_cbc",
    "sm4_encrypt_ecb",
]

SM4_BLOCK = 16
"""SM4 block size in bytes (and the CBC IV size)."""
SM4_KEY_SIZE = 16
"""SM4 key size in bytes (128 bits)."""


class GMError(TanpuhuiError):
    """A 国密 operation failed: SM3 missing from OpenSSL, a key or IV of the wrong size, or bad padding."""


def sm3_available() -> bool:
    """Whether this Python's OpenSSL provides SM3 (OpenSSL 3 does unless built with ``no-sm3``)."""
    return "sm3" in hashlib.algorithms_available


def _require_sm3() -> None:
    if not sm3_available():
        import ssl

        raise GMError(
            f"SM3 is not available: this Python is linked against {ssl.OPENSSL_VERSION}, which does not provide it "
            "(hashlib.algorithms_available has no 'sm3'). Use a Python built against OpenSSL 3 with SM3 enabled."
        )


def sm3(data: bytes) -> bytes:
    """The 32-byte SM3 digest of ``data`` (GB/T 32905-2016)."""
    _require_sm3()
    return hashlib.new("sm3", data).digest()


def sm3_hex(data: bytes) -> str:
    """The SM3 digest of ``data`` as 64 lower-case hex characters."""
    _require_sm3()
    return hashlib.new("sm3", data).hexdigest()


def hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC (RFC 2104) with SM3 as the hash: 32 bytes."""
    _require_sm3()
    if not key:
        raise GMError("HMAC-SM3 key is empty")
    return hmac.new(key, message, "sm3").digest()


def _check_key(key: bytes) -> None:
    if len(key) != SM4_KEY_SIZE:
        raise GMError(f"SM4 key must be {SM4_KEY_SIZE} bytes (32 hex characters), got {len(key)} bytes")


def _check_iv(iv: bytes) -> None:
    if len(iv) != SM4_BLOCK:
        raise GMError(f"SM4-CBC IV must be {SM4_BLOCK} bytes, got {len(iv)} bytes")


def _pad(data: bytes) -> bytes:
    padder = _padding.PKCS7(SM4_BLOCK * 8).padder()
    return padder.update(data) + padder.finalize()


def _unpad(data: bytes) -> bytes:
    unpadder = _padding.PKCS7(SM4_BLOCK * 8).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise GMError("SM4 decryption gave invalid PKCS#7 padding: wrong key or altered ciphertext") from None


def _check_blocks(data: bytes, what: str) -> None:
    if len(data) % SM4_BLOCK:
        raise GMError(f"SM4 {what} length {len(data)} is not a multiple of {SM4_BLOCK} bytes")


def _run(cipher: Cipher[modes.ECB] | Cipher[modes.CBC], data: bytes, encrypt: bool) -> bytes:
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def sm4_encrypt_ecb(key: bytes, plaintext: bytes, *, padding: bool = True) -> bytes:
    """SM4-ECB encryption. ECB leaks equal blocks: use it only where an interface demands it."""
    _check_key(key)
    data = _pad(plaintext) if padding else plaintext
    _check_blocks(data, "plaintext")
    return _run(Cipher(algorithms.SM4(key), modes.ECB()), data, True)


def sm4_decrypt_ecb(key: bytes, ciphertext: bytes, *, padding: bool = True) -> bytes:
    """SM4-ECB decryption; with ``padding`` the PKCS#7 padding is checked and removed."""
    _check_key(key)
    _check_blocks(ciphertext, "ciphertext")
    data = _run(Cipher(algorithms.SM4(key), modes.ECB()), ciphertext, False)
    return _unpad(data) if padding else data


def sm4_encrypt_cbc(key: bytes, iv: bytes, plaintext: bytes, *, padding: bool = True) -> bytes:
    """SM4-CBC encryption with a 16-byte ``iv`` (use a fresh random one per message)."""
    _check_key(key)
    _check_iv(iv)
    data = _pad(plaintext) if padding else plaintext
    _check_blocks(data, "plaintext")
    return _run(Cipher(algorithms.SM4(key), modes.CBC(iv)), data, True)


def sm4_decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes, *, padding: bool = True) -> bytes:
    """SM4-CBC decryption; with ``padding`` the PKCS#7 padding is checked and removed."""
    _check_key(key)
    _check_iv(iv)
    _check_blocks(ciphertext, "ciphertext")
    if padding and not ciphertext:
        raise GMError("SM4 ciphertext is empty; a padded message has at least one block")
    data = _run(Cipher(algorithms.SM4(key), modes.CBC(iv)), ciphertext, False)
    return _unpad(data) if padding else data
