"""What a provider plugin declares: its spec as data, and the parts every plugin must have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from activities.errors import IntegrationError
from store.models import IntegrationType

if TYPE_CHECKING:
    from activities.pipeline import Action
    from activities.runtime import Runtime
    from store.models import Connection
    from vault.credentials import Credentials, OAuth2Credentials


@dataclass(frozen=True)
class RateLimitSpec:
    """A provider limit as documented: `limit` calls per `period` seconds per `scope`."""

    scope: str
    limit: int
    period: float
    description: str
    concurrency: int | None = None


@dataclass(frozen=True)
class ProviderSpec:
    """Provider facts as data (Nango-style), read by the shared pipeline."""

    name: str
    integration_type: IntegrationType
    auth_kind: str
    base_url_setting: str
    scopes: tuple[str, ...] = ()
    rate_limits: Mapping[str, RateLimitSpec] = field(default_factory=dict)
    retry_after_header: str = "Retry-After"
    token_url_setting: str | None = None
    has_webhooks: bool = False
    secret_settings: tuple[str, ...] = ()
    required_settings: tuple[str, ...] = ()
    docs: str = ""


Classifier = Callable[[int, Mapping[str, str], Any], IntegrationError | None]
AuthHeaders = Callable[["Credentials"], dict[str, str]]
Refresh = Callable[["Runtime", "Connection", "OAuth2Credentials"], Awaitable["OAuth2Credentials"]]
ConnectionTest = Callable[["Action"], Awaitable[dict[str, Any]]]
# Revoke the connection's grant at the provider (on removal); returns {"revoked": bool, ...}.
Revoke = Callable[["Action"], Awaitable[dict[str, Any]]]
WebhookVerifier = Callable[..., bool]
WebhookParser = Callable[[bytes], Any]


@dataclass(frozen=True)
class Plugin:
    """Every part of a provider plugin; the registry test fails when one is missing."""

    spec: ProviderSpec
    models: ModuleType
    client: type
    classify: Classifier
    auth_headers: AuthHeaders
    activities: Callable[[Runtime], Sequence[Callable[..., Any]]]
    workflows: Sequence[type]
    test_connection: ConnectionTest
    refresh: Refresh | None = None
    revoke: Revoke | None = None
    webhook_verifier: WebhookVerifier | None = None
    webhook_parser: WebhookParser | None = None
