"""Government API gateways: signed requests, a token service, envelopes, error codes and SM4-sealed payloads.

Chinese government data-sharing platforms put their datasets behind an API gateway. No public Anhui specification
was found; this package implements the conventions seen in the field, with everything a real gateway document may
change made configurable. Any adapter can use it; the provincial big-data adapter does.

Import from ``tanpuhui.sdk.gateway`` (or the names ``tanpuhui.sdk`` re-exports). Inside: :mod:`.signing` (signed
requests and their verifier), :mod:`.envelope` (error codes, envelopes, sealed payloads) and :mod:`.client` (the
client with its token service).

Request signing
===============
Every request (the token request included) carries::

    X-Ca-Key: <app key>
    X-Ca-Timestamp: <unix time in milliseconds>
    X-Ca-Nonce: <fresh random string, 16-64 of [A-Za-z0-9_-]; never reused>
    X-Ca-Signature-Method: HMAC-SHA256 | HMAC-SM3
    X-Ca-Signature: base64(HMAC(app secret as UTF-8, canonical string as UTF-8))
    Authorization: Bearer <access token>          (data requests only, when a token service is configured)

The canonical string is seven lines joined by ``\\n`` (no trailing newline)::

    METHOD          upper-case, e.g. GET
    PATH            the path as sent, percent-encoded, without the query ("/" when empty)
    QUERY           the query parameters decoded, sorted by name then value (code-point order), each re-encoded
                    as name=value with RFC 3986 percent-encoding (A-Z a-z 0-9 - _ . ~ left as is), joined by "&";
                    empty when there are none
    APP_KEY         the X-Ca-Key value
    TIMESTAMP       the X-Ca-Timestamp value
    NONCE           the X-Ca-Nonce value
    BODY_DIGEST     lower-case hex digest of the raw body bytes: SHA-256 for HMAC-SHA256, SM3 for HMAC-SM3
                    (the digest of the empty string when there is no body)

Example (HMAC-SHA256, app secret ``sandbox-secret``)::

    GET
    /share/v1/datasets/water_usage/records
    cursor=MTIz&pageSize=2
    ak-sandbox
    1730764800000
    3f9c2a7be1d04c5e8a6b7d9e0f1a2b3c
    e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

    X-Ca-Signature: CTDun/2VyRmtxGoBQJEzH4KI0bf/JnF2he8JkQym8rw=

(with HMAC-SM3 the last line is the SM3 of the empty body, 1ab21d83...5082aa2b, and the signature
8dTbMfr2n4ocKTGTLR6xdVR3PQQLWz8Og8GM5pSnfgs=; both checked against the OpenSSL command line)

:class:`GatewayAuth` signs each request as httpx sends it, so every retry of :class:`~tanpuhui.sdk.PartnerClient`
goes out with a fresh timestamp and nonce (a resent nonce would be refused as a replay).
:class:`GatewayVerifier` is the server side, for sandboxes and partners: it rejects unknown app keys, signature
methods it does not accept, timestamps outside ±15 minutes (configurable) and nonces it has seen within the window.

Token service
=============
``POST {token_path}`` with body ``{"grantType": "client_credentials"}``, signed as above, answers
``{"code": "0000", "msg": "success", "data": {"accessToken": "...", "expiresIn": 1800, "tokenType": "Bearer"}}``
(``access_token``/``expires_in`` are accepted too). The token is cached and fetched again ``token_leeway`` seconds
before it expires (at the latest halfway through its life); a token-expired error code (or an HTTP 401) re-fetches it
once and repeats the request; a second refusal is a :class:`~tanpuhui.sdk.PartnerAuthError`.

Envelopes and error codes
=========================
Responses are ``{"code": "0000" | 200, "msg": ..., "data": ...}`` or ``{"flag": "200", "msg": ..., "data": ...}``
(``msg`` may be spelled ``message``). Success codes are configurable (default ``"0000"`` and ``"200"``). Any other
code is looked up in :data:`DEFAULT_CODES` (plus configured overrides) and handled by its :class:`CodeAction`:

- ``retry``: repeated with exponential backoff (honouring ``Retry-After`` when sent) within the PartnerClient's
  :class:`~tanpuhui.sdk.RetryPolicy`; exhausted -> :class:`~tanpuhui.sdk.PartnerUnavailable`;
- ``reauth``: the token is fetched again once and the request repeated -> :class:`~tanpuhui.sdk.PartnerAuthError`
  when refused again;
- ``auth``: :class:`~tanpuhui.sdk.PartnerAuthError` (signature invalid, unknown app key, no permission, clock skew);
- ``fail`` and unknown codes: :class:`~tanpuhui.sdk.PartnerResponseError`.

Every message names the dataset, the gateway's code, what the code means and the gateway's ``msg``. HTTP-level
failures (429/5xx with ``Retry-After``, timeouts) are retried by the PartnerClient underneath; a gateway that answers
its error codes with HTTP 4xx reaches us as the PartnerClient's 4xx errors (the code and msg are in the message, but
no code-level retry or re-auth applies, except that an HTTP 401 re-fetches the token once).

Encrypted payloads
==================
Some datasets answer with the data sealed (:class:`PayloadCipher`)::

    {"code": "0000", "msg": "success",
     "data": {"encData": base64(iv || SM4-CBC(sm4 key, iv, PKCS#7(JSON of the clear data)))},
     "encType": "SM4", "signType": "HMAC-SM3", "signData": hex(HMAC-SM3(mac key, encData as ASCII))}

The tag is verified first (constant-time), then the data decrypted and its padding checked, then parsed as JSON; a
bad tag, a wrong key or anything malformed is a :class:`~tanpuhui.sdk.PartnerResponseError` naming the dataset,
never garbage records. A dataset called with ``encrypted=True`` that answers in clear is refused (no downgrade).
"""

# The names are listed once, in each module's __all__ (the pattern of the standard library's asyncio package).
from . import client, envelope, signing
from .client import *  # noqa: F403
from .envelope import *  # noqa: F403
from .signing import *  # noqa: F403

__all__ = signing.__all__ + envelope.__all__ + client.__all__
