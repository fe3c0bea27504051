"""tanpuhui SDK: the contract adapter, methodology and sink authors program against.

Everything public is re-exported here; import from ``tanpuhui.sdk`` only.
"""

from .adapter import Adapter, AdapterSettings, HttpOptions, Page, PullStream, PushStream, RecordLike, Stream
from .client import ClientStats, OAuth2ClientCredentials, PartnerClient, RetryPolicy
from .context import Rejection, StreamContext
from .errors import (
    ConfigError,
    ItemRejected,
    MethodologyError,
    PartnerAuthError,
    PartnerError,
    PartnerResponseError,
    PartnerUnavailable,
    PluginError,
    PrivacyError,
    Problem,
    SchemaError,
    SignatureError,
    TanpuhuiError,
)
from .gateway import (
    CodeAction,
    GatewayAuth,
    GatewayClient,
    GatewayConfig,
    GatewaySignatureError,
    GatewayStats,
    GatewayVerifier,
    PayloadCipher,
)
from .gm import GMError
from .hookspecs import hookimpl, hookspec
from .methodology import Factor, Formula, Methodology, Quantified, recompute
from .privacy import (
    Pseudonymiser,
    is_valid_resident_id,
    mask_mobile,
    mask_resident_id,
    normalise_mobile,
    normalise_resident_id,
    redact,
)
from .records import ReductionRecord, behaviour_fingerprint, make_record_id
from .sandbox import Sandbox, SandboxFactory, WebhookRequest
from .sink import OutboxRow, Sink, SinkError, SinkSettings
from .webhooks import WebhookSigner, WebhookVerifier

__all__ = [
    "Adapter",
    "AdapterSettings",
    "ClientStats",
    "CodeAction",
    "ConfigError",
    "Factor",
    "Formula",
    "GMError",
    "GatewayAuth",
    "GatewayClient",
    "GatewayConfig",
    "GatewaySignatureError",
    "GatewayStats",
    "GatewayVerifier",
    "HttpOptions",
    "ItemRejected",
    "Methodology",
    "MethodologyError",
    "OAuth2ClientCredentials",
    "OutboxRow",
    "Page",
    "PartnerAuthError",
    "PartnerClient",
    "PartnerError",
    "PartnerResponseError",
    "PartnerUnavailable",
    "PayloadCipher",
    "PluginError",
    "PrivacyError",
    "Problem",
    "Pseudonymiser",
    "PullStream",
    "PushStream",
    "Quantified",
    "RecordLike",
    "ReductionRecord",
    "Rejection",
    "RetryPolicy",
    "Sandbox",
    "SandboxFactory",
    "SchemaError",
    "SignatureError",
    "Sink",
    "SinkError",
    "SinkSettings",
    "Stream",
    "StreamContext",
    "TanpuhuiError",
    "WebhookRequest",
    "WebhookSigner",
    "WebhookVerifier",
    "behaviour_fingerprint",
    "hookimpl",
    "hookspec",
    "is_valid_resident_id",
    "make_record_id",
    "mask_mobile",
    "mask_resident_id",
    "normalise_mobile",
    "normalise_resident_id",
    "recompute",
    "redact",
]
