"""The sandbox kit: what every partner sandbox needs, so a sandbox holds only its data set and its endpoints.

- :class:`PartnerSandbox`: the base of a partner simulator (OAuth2 client credentials, a fault schedule, stats,
  served on loopback; implements :class:`tanpuhui.sdk.Sandbox`); :class:`SandboxServer` is the same without
  OAuth2, for a partner that authenticates otherwise.
- :class:`ClientCredentials` and :class:`TokenStore`: the token endpoint (Basic auth or form fields, opaque tokens
  with a TTL, early revocation or expiry) and the bearer check.
- :class:`FaultSchedule`: every-N failures, every-N throttling with ``Retry-After``, a queue of one-off answers.
- :class:`ApiKey`: the check of a partner that authenticates with a key in a header.
- :class:`OffsetCursor` (:data:`OFFSET_CURSOR`) and :func:`positive_int`: cursor paging over a feed;
  :func:`page_range`, :func:`page_count`, :func:`offset_range`, :func:`non_negative_int` and :func:`link`: page
  numbers, offsets and next links.
- :func:`json_response` and :class:`EncodedItems`: JSON answers, pages spliced from items encoded once.
- :class:`SandboxStats` and :class:`FirstServed`: what was served.
- :func:`signed_batches` and :func:`new_webhook_secret`: the signed webhook requests a partner pushes.
- :func:`with_check_char` and :func:`with_wrong_check_char`: synthetic resident IDs for a data set, valid or not.

It imports Starlette and uvicorn: import it from a sandbox module, never from a plugin module the hub loads at
start-up (the ``register_sandboxes`` factory imports the sandbox when called).
"""

from .apikey import ApiKey
from .faults import FaultSchedule, ScheduledFault
from .identities import with_check_char, with_wrong_check_char
from .oauth import INVALID_TOKEN, NO_STORE, ClientCredentials, TokenStore, bearer_token
from .paging import (
    OFFSET_CURSOR,
    OffsetCursor,
    Window,
    link,
    non_negative_int,
    offset_range,
    page_count,
    page_range,
    positive_int,
    segment_of,
)
from .partner import PartnerSandbox, SandboxServer
from .responses import EncodedItems, json_response
from .stats import FirstServed, SandboxStats
from .webhooks import new_webhook_secret, signed_batches

__all__ = [
    "INVALID_TOKEN",
    "NO_STORE",
    "OFFSET_CURSOR",
    "ApiKey",
    "ClientCredentials",
    "EncodedItems",
    "FaultSchedule",
    "FirstServed",
    "OffsetCursor",
    "PartnerSandbox",
    "SandboxServer",
    "SandboxStats",
    "ScheduledFault",
    "TokenStore",
    "Window",
    "bearer_token",
    "json_response",
    "link",
    "new_webhook_secret",
    "non_negative_int",
    "offset_range",
    "page_count",
    "page_range",
    "positive_int",
    "segment_of",
    "signed_batches",
    "with_check_char",
    "with_wrong_check_char",
]
