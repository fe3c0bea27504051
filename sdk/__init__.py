"""tanpuhui SDK: the contract adapter, methodology and sink authors program against.

Everything public is re-exported here; import from ``tanpuhui.sdk`` only.
"""

from .adapter import (
    Adapter,
    AdapterSettings,
    HttpOptions,
    Page,
    PartnerSettings,
    PullStream,
    PushStream,
    RecordLike,
    Stream,
)
from .client import (
    ClientStats,
    OAuth2ClientCredentials,
    OAuth2Settings,
    PartnerClient,
    RetryPolicy,
    RetrySettings,
    parse_retry_after,
)
from .context import Rejection, StreamContext, Withdrawal
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
from .factors import GRID_ANHUI_2022, NATURAL_GAS
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
from .paging import as_objects, cursor_fields, describe_shape
from .plugin import AdapterPlugin
from .privacy import (
    Pseudonymiser,
    is_valid_resident_id,
    mask_mobile,
    mask_resident_id,
    normalise_mobile,
    normalise_resident_id,
    redact,
)
from .records import (
    ReductionRecord,
    behaviour_fingerprint,
    make_record_id,
    neighbour_fingerprint_at,
    period_start_seconds,
    record_id_at_revision,
)
from .sandbox import Sandbox, SandboxFactory, WebhookRequest
from .secrets import register_secrets
from .sink import OutboxRow, Sink, SinkError, SinkSettings
from .webhooks import WebhookSigner, WebhookVerifier, decode_secret

__all__ = [
    "GRID_ANHUI_2022",
    "NATURAL_GAS",
    "Adapter",
    "AdapterPlugin",
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
    "OAuth2Settings",
    "OutboxRow",
    "Page",
    "PartnerAuthError",
    "PartnerClient",
    "PartnerError",
    "PartnerResponseError",
    "PartnerSettings",
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
    "RetrySettings",
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
    "Withdrawal",
    "as_objects",
    "behaviour_fingerprint",
    "cursor_fields",
    "decode_secret",
    "describe_shape",
    "hookimpl",
    "hookspec",
    "is_valid_resident_id",
    "make_record_id",
    "mask_mobile",
    "mask_resident_id",
    "neighbour_fingerprint_at",
    "normalise_mobile",
    "normalise_resident_id",
    "parse_retry_after",
    "period_start_seconds",
    "recompute",
    "record_id_at_revision",
    "redact",
    "register_secrets",
]
