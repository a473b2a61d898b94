"""What a provider declares: its facts as data, the hooks the pipeline calls, the parts it contributes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import IntegrationError
from core.limiter import Concurrency, Limit
from core.settings import ApiSettings

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from core.demo import DemoContext
    from core.pipeline import Action
    from core.runtime import Runtime
    from store.models import Connection
    from vault.credentials import Credentials, OAuth2Credentials


@dataclass(frozen=True)
class RateLimitSpec:
    """A provider limit as documented: `limit` calls per `period` seconds per `scope`.

    The limiter reads these numbers (through `window()` and `concurrency()`), so the spec is what runs. It
    enforces them as documented: slots are held until the answer (see `core.limiter.Limit`), so arrival
    jitter needs no margin. `burst` paces calls (GCRA): `period / limit` apart, up to `burst` of them
    together to catch up after a delay (1: strictly even); `None` leaves only the window. `margin` (seconds
    added to the window) is kept for callers whose extra slots are not held to an answer (Graph's `$batch`
    members); the WhatsApp and Slack specs declare none.
    """

    scope: str
    limit: int
    period: float
    description: str
    margin: float = 0.0
    max_concurrent: int | None = None
    burst: int | None = None

    def window(self, key: str, *, limit: int | None = None, period: float | None = None,
               margin: float | None = None, burst: int | None = None) -> Limit:
        """The limiter's window for one key, with per-connection overrides of the documented numbers."""
        base = self.period if period is None else period
        n = self.limit if limit is None else limit
        if burst is None and self.burst is not None:
            burst = max(1, round(self.burst * n / self.limit))  # a connection's own limit keeps the proportion
        return Limit(self.scope, key, n, base + (self.margin if margin is None else margin), burst)

    def concurrency(self, key: str, limit: int | None = None) -> Concurrency:
        """The in-flight cap for one key (Graph: 4 per mailbox)."""
        cap = limit if limit is not None else self.max_concurrent
        if cap is None:
            raise ValueError(f"{self.scope}: no concurrency limit declared")
        return Concurrency(self.scope, key, cap)


@dataclass(frozen=True)
class ProviderSpec:
    """Provider facts as data (Nango-style): everything here is read by the pipeline, the CLI or the gateway."""

    name: str
    integration_type: str  # OpenSyte's IntegrationType value
    auth_kind: str  # the credential kind stored in Vault: bearer, oauth2, api_key
    scopes: tuple[str, ...] = ()
    rate_limits: Mapping[str, RateLimitSpec] = field(default_factory=dict)
    retry_after_header: str = "Retry-After"
    # Error codes that mean "too many requests" whatever the HTTP status (Meta's 130429 comes as a 400):
    # the limiter pauses the call's keys when it sees one (HTTP 429 always does).
    throttle_codes: frozenset[str | int] = frozenset()
    secret_settings: tuple[str, ...] = ()  # what `osi connections add` asks for
    required_settings: tuple[str, ...] = ()  # non-secret settings a connection must have
    install_path: str | None = None  # the gateway route an administrator opens to connect (OAuth)


Classifier = Callable[[int, Mapping[str, str], Any], IntegrationError | None]
AuthHeaders = Callable[["Credentials"], dict[str, str]]
# Refresh an expiring access token; gets its own Provider so it can call the token endpoint as an app action.
Refresh = Callable[["Runtime", "Provider", "Connection", "OAuth2Credentials"], Awaitable["OAuth2Credentials"]]
ConnectionTest = Callable[["Action"], Awaitable[dict[str, Any]]]
# Revoke the connection's grant at the provider (on removal); returns {"revoked": bool, ...}.
Revoke = Callable[["Action"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Provider:
    """What the action pipeline needs of a provider: its facts, settings section, classifier and auth."""

    spec: ProviderSpec
    settings: type[ApiSettings]
    classify: Classifier
    auth_headers: AuthHeaders
    refresh: Refresh | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def integration_type(self) -> str:
        return self.spec.integration_type


# Activities are bound to the process's Runtime (its `registry` lists the other plugins); routes reach the
# Runtime and Temporal client through `request.app.state`; CLI commands through `core.cli`.
ActivityFactory = Callable[["Runtime"], Sequence[Callable[..., Any]]]
RouteFactory = Callable[[], "APIRouter"]
CliFactory = Callable[[], "typer.Typer"]
Demo = Callable[["DemoContext"], Awaitable[None]]
# Called once per worker or gateway process with its Runtime and Temporal client (e.g. to nudge workflows after
# a commit); called on the process's event loop.
OnStart = Callable[["Runtime", Any], None]


@dataclass(frozen=True)
class Plugin:
    """Every part one folder under activities/ contributes to the worker, gateway, CLI and demo.

    A provider plugin has a `provider`; a shared capability (calendars over several providers,
    maintenance) has none and finds what it serves through the registry's `capabilities`.
    """

    name: str
    provider: Provider | None = None
    activities: ActivityFactory | None = None
    test_connection: ConnectionTest | None = None
    revoke: Revoke | None = None
    routes: RouteFactory | None = None
    cli: CliFactory | None = None
    cli_help: str = ""
    demo: Demo | None = None
    on_start: OnStart | None = None
    # Named hooks another plugin reads (e.g. "calendar": this provider's calendar backend and connect flow).
    capabilities: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """The plugins of one process, in registration order; the worker, gateway and CLI loop over it."""

    def __init__(self, plugins: Sequence[Plugin]) -> None:
        self.plugins = tuple(plugins)
        names = [p.name for p in self.plugins]
        if len(set(names)) != len(names):
            raise ValueError(f"plugin names must be unique: {names}")

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self.plugins)

    def providers(self) -> list[Plugin]:
        return [p for p in self.plugins if p.provider is not None]

    def integration_types(self) -> list[str]:
        return [p.provider.integration_type for p in self.plugins if p.provider is not None]

    def plugin_for(self, integration_type: str) -> Plugin:
        """The provider plugin of an integration type (or provider name); KeyError names the choices."""
        for p in self.plugins:
            if p.provider is not None and integration_type in (p.provider.integration_type, p.provider.name):
                return p
        raise KeyError(f"unknown integration type {integration_type!r} "
                       f"(one of {', '.join(self.integration_types())})")

    def provider_for(self, integration_type: str) -> Provider:
        provider = self.plugin_for(integration_type).provider
        assert provider is not None
        return provider

    def capabilities(self, name: str) -> dict[str, Any]:
        """{integration type: hook} of every provider offering capability `name`."""
        return {p.provider.integration_type: p.capabilities[name] for p in self.plugins
                if p.provider is not None and name in p.capabilities}
