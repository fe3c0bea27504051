"""Scrubbing recorded partner traffic before a cassette is written.

What goes, and why:

- secrets: request headers are never recorded at all (they carry ``Authorization``, gateway signatures, API keys);
  response headers that carry credentials or signatures (``Set-Cookie``, ``webhook-signature``,
  ``X-Ca-Signature``, anything named like a token, secret, key or nonce) are dropped; JSON values under secret-named
  keys anywhere in a body (``access_token``, ``refresh_token``, ``id_token``, ``client_secret``, ``app_secret``,
  ``accessToken``, ``password``, ``signature``, ...) are replaced by ``scrubbed-<key>-<n>``, the same value always by
  the same placeholder; query parameters with such names are replaced the same way and left out of matching;
- personal identifiers: every resident ID (GB 11643 shape) and mainland mobile number anywhere in a body or a URL is
  replaced by a fake of the same shape: a valid resident ID by a valid one (same region code, so region logic still
  works; a fixed birth date; a serial), an invalid one by an invalid one (so a test of the rejection still
  rejects), a mobile by ``1700`` + a serial. Values of the partner schema's ``x-personal-data`` fields (card and
  account numbers) are replaced keeping their shape: letters kept, digits replaced, length kept. The same original
  always becomes the same fake within a recording, so joins across items and pages (tap-in with tap-out, a
  household's readings) survive, and fakes are assigned in order of appearance, so re-recording the same traffic
  gives the same file;
- timestamps and other per-response noise: ``Date``, ``Server``, ``Content-Length``, request ids and the like are
  dropped, so a re-recording differs only where the partner's data did.

Sealed payloads (encrypted bodies) cannot be looked into: subclass :class:`Scrubber` and override
:meth:`Scrubber.scrub_body` to decrypt, scrub and re-seal when recording a real partner that seals personal data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tanpuhui.sdk import is_valid_resident_id

__all__ = ["DROPPED_HEADERS", "Scrubber", "identifiers_in", "is_secret_key", "personal_fields"]

_SECRET_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "apikey",
    "appsecret",
    "privatekey",
    "credential",
)
_SECRET_NAMES = frozenset({"sign", "sig", "cookie", "setcookie", "authorization", "proxyauthorization", "nonce"})


def is_secret_key(name: str) -> bool:
    """Whether a JSON key, query parameter or header name holds a credential or a signature.

    ``access_token``, ``refreshToken``, ``client_secret``, ``X-Ca-Signature``, ``sign`` are; ``token_type``,
    ``expires_in`` and paging cursors (``next_page_token``) are not: replay needs them as they were.
    """
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    if "page" in normalised or "cursor" in normalised or normalised.startswith("next"):
        return False
    return normalised in _SECRET_NAMES or normalised.endswith(_SECRET_SUFFIXES)


DROPPED_HEADERS = frozenset(
    {
        "date",
        "server",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "age",
        "expires",
        "last-modified",
        "etag",
        "via",
        "alt-svc",
        "x-request-id",
        "x-trace-id",
        "x-ca-request-id",
        "x-ca-timestamp",
        "request-id",
        "traceparent",
        "tracestate",
        "webhook-id",
        "webhook-timestamp",
        "svix-id",
        "svix-timestamp",
        "x-runtime",
        "x-response-time",
    }
)
"""Response headers never recorded: timestamps, sizes the replay recomputes, per-request ids."""

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_RID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+86[\s-]?|0086[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![0-9A-Za-z])")


def identifiers_in(text: str) -> list[str]:
    """Resident-ID and mobile shaped substrings of ``text`` (not glued to letters or digits, so hashes never match)."""
    return [m.group(0) for m in _RID.finditer(text)] + [m.group(0) for m in _MOBILE.finditer(text)]


def personal_fields(schemas: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Property name -> ``x-personal-data`` kind, for every marked property anywhere in the schemas."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            props = node.get("properties")
            if isinstance(props, Mapping):
                for name, sub in props.items():
                    if isinstance(sub, Mapping) and "x-personal-data" in sub:
                        found[str(name)] = str(sub["x-personal-data"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for schema in schemas:
        walk(schema)
    return found


def _check_char(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


class Scrubber:
    """Replaces secrets and personal identifiers in recorded exchanges; one instance per recording.

    ``personal_keys`` maps JSON keys whose values identify a person (from the schemas' ``x-personal-data``, see
    :func:`personal_fields`) to their kind.
    """

    def __init__(self, personal_keys: Mapping[str, str] | None = None) -> None:
        self.personal_keys = dict(personal_keys or {})
        self._fakes: dict[str, str] = {}
        self._serials: dict[str, int] = {}
        self.scrubbed_query: set[str] = set()
        """Query parameters whose values were replaced (a cassette ignores them when matching)."""

    # -- the fakes ---------------------------------------------------------------------------------------------

    def _next(self, kind: str) -> int:
        self._serials[kind] = self._serials.get(kind, 0) + 1
        return self._serials[kind]

    def fake_resident_id(self, original: str) -> str:
        """A fake for a resident ID: valid iff the original is, same region code, fixed birth date, a serial."""
        key = "rid:" + original.upper()
        fake = self._fakes.get(key)
        if fake is None:
            n = self._next("rid")
            birth = date(1990, 1, 1) + timedelta(days=n // 1000)  # 1000 people per day of birth, then the next day
            first17 = f"{original[:6]}{birth:%Y%m%d}{n % 1000:03d}"
            check = _check_char(first17)
            if not is_valid_resident_id(original):
                check = _CHECK[(_CHECK.index(check) + 1) % 11]
            fake = self._fakes[key] = first17 + check
        return fake

    def fake_mobile(self, original: str) -> str:
        """A fake mainland mobile number, ``1700`` + a 7-digit serial, the same for every spelling of one number."""
        digits = re.sub(r"\D", "", original)[-11:]
        key = "mobile:" + digits
        fake = self._fakes.get(key)
        if fake is None:
            fake = self._fakes[key] = f"1700{self._next('mobile'):07d}"
        return fake

    def fake_identifier(self, kind: str, original: str) -> str:
        """A fake of the same shape (letters kept, digits replaced, same length) for a card or account number."""
        key = f"{kind}:{original}"
        fake = self._fakes.get(key)
        if fake is None:
            n = self._next("id:" + kind)
            positions = [i for i, c in enumerate(original) if c.isdigit()]
            serial = str(n)[-len(positions) :] if positions else ""
            # Leading digits from a hash (varied, like real numbers), trailing ones the serial (so fakes are unique).
            filler = hashlib.sha256(f"{kind}:{n}".encode()).digest() * 2
            digits = [str(filler[j] % 10) for j in range(len(positions) - len(serial))] + list(serial)
            chars = list(original)
            for i, digit in zip(positions, digits, strict=True):
                chars[i] = digit
            if positions and chars[positions[0]] == "0" and original[positions[0]] != "0":
                chars[positions[0]] = "9"
            fake = self._fakes[key] = "".join(chars)
        return fake

    # -- text, JSON, URLs, headers ------------------------------------------------------------------------------

    def scrub_text(self, text: str) -> str:
        """Replace resident IDs and mobile numbers (and already seen personal values) anywhere in ``text``."""
        text = _RID.sub(lambda m: self.fake_resident_id(m.group(0)), text)
        return _MOBILE.sub(lambda m: self.fake_mobile(m.group(0)), text)

    def scrub_json(self, value: Any, key: str = "") -> Any:
        """A scrubbed copy of a JSON document."""
        if isinstance(value, dict):
            return {k: self.scrub_json(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_json(v, key) for v in value]
        if key and is_secret_key(key) and isinstance(value, str | int | float) and not isinstance(value, bool):
            return self._placeholder(key, str(value))
        if key in self.personal_keys and isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value)
            kind = self.personal_keys[key]
            shaped = kind in ("mobile", "resident_id")
            scrubbed = self.scrub_text(text) if shaped else self.fake_identifier(kind, text)
            return int(scrubbed) if isinstance(value, int) and scrubbed.isdigit() else scrubbed
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) == 11:
            scrubbed = self.scrub_text(str(value))
            return int(scrubbed) if scrubbed.isdigit() else value
        return value

    def _placeholder(self, key: str, original: str) -> str:
        name = re.sub(r"[^a-z0-9]+", "-", re.sub(r"(?<=[a-z])(?=[A-Z])", "-", key).lower()).strip("-")
        fake = self._fakes.get(f"secret:{name}:{original}")
        if fake is None:
            fake = self._fakes[f"secret:{name}:{original}"] = f"scrubbed-{name}-{self._next('secret:' + name)}"
        return fake

    def scrub_url(self, url: str) -> str:
        """Replace secret query values and personal identifiers in a URL; seen personal values in path segments."""
        parts = urlsplit(url)
        pairs = []
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if is_secret_key(k):
                self.scrubbed_query.add(k)
                pairs.append((k, "scrubbed"))
            elif k in self.personal_keys:
                pairs.append((k, str(self.scrub_json({k: v})[k])))
            else:
                pairs.append((k, self.scrub_text(v)))
        segments = [self._known(s) for s in parts.path.split("/")]
        query = urlencode(pairs, safe=":,")
        return urlunsplit((parts.scheme, parts.netloc, self.scrub_text("/".join(segments)), query, parts.fragment))

    def _known(self, segment: str) -> str:
        for kind in set(self.personal_keys.values()):
            fake = self._fakes.get(f"{kind}:{segment}")
            if fake is not None:
                return fake
        return segment

    def scrub_headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """The response headers worth keeping: no timestamps or per-request noise, no credentials or signatures."""
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in DROPPED_HEADERS or is_secret_key(lower) or "signature" in lower or lower.endswith("-key"):
                continue
            kept[_title(name)] = self.scrub_text(value)
        return kept

    def scrub_body(self, content: bytes, content_type: str) -> dict[str, Any]:
        """The recorded form of a response body: ``{"json": ...}``, ``{"body": text}`` or ``{"body_base64": ...}``."""
        import base64

        import orjson

        if "json" in content_type.lower() or content[:1] in (b"{", b"["):
            try:
                return {"json": self.scrub_json(orjson.loads(content))}
            except orjson.JSONDecodeError:
                pass
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return {"body_base64": base64.b64encode(content).decode()}
        return {"body": self.scrub_text(text)} if text else {}


def _title(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:] for p in name.split("-"))
