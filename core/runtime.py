"""Process-wide runtime shared by all activities: store, Vault, one HTTP client (sharded pools),
limiter, breakers. Built once per worker (or CLI/gateway) process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import httpx

from core.breaker import Breakers, BreakerState
from core.egress import EgressGuard
from core.errors import IntegrationError
from core.http import ShardedClient
from core.limiter import MemoryLimiter, RedisLimiter, make_limiter
from core.pipeline import Action, AppAction, Prefetch
from core.plugin import Provider, Registry
from core.settings import S, Settings
from core.vaults import make_vault
from store.db import Store
from store.models import AdminNotification, Connection, ConnectionStatus, Health
from vault.client import VaultClient
from vault.credentials import Credentials, OAuth2Credentials
from vault.oauth import TokenRefresher

log = logging.getLogger("osi.runtime")
AUDIT_KEY = "audit-chain"  # Vault `osi/keys/audit-chain`: the audit log's HMAC key, generated on first use

# Set while a connection is tried out before it is kept (the dashboard's "test, then save"): a failing test
# must not alert administrators about a connection that is about to be discarded.
ON_TRIAL: ContextVar[bool] = ContextVar("osi_connection_on_trial", default=False)


class Runtime:
    """Dependencies of the action pipeline; activities receive it at construction."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        vault: VaultClient | None = None,
        http: httpx.AsyncClient | ShardedClient | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        # The composition root's plugins (connections service, maintenance, shared calendar activities).
        self.registry = registry or Registry(())
        self.store = store or Store(settings.database_url, threads=settings.store_threads)
        self.vault = vault or make_vault(settings)
        if self.store.audit_key is None:
            vault_ = self.vault
            self.store.audit_key = lambda: vault_.generated_key(AUDIT_KEY)
        self.http = http or ShardedClient(shards=settings.http_pool_shards, timeout=settings.http_timeout_seconds,
                                          max_connections=settings.http_max_connections)
        self.limiter: MemoryLimiter | RedisLimiter = make_limiter(settings.limiter_backend, settings.limiter_key_prefix)
        self.breakers = Breakers(settings.breaker_failure_threshold, settings.breaker_reset_seconds,
                                 on_transition=self._breaker_moved)
        self._background: set[asyncio.Task[Any]] = set()
        self.refresher = TokenRefresher(self.vault)
        self.extras: dict[str, Any] = {}  # per-plugin caches (e.g. WhatsApp templates)
        # Called with the organization after an alert is recorded: the worker, gateway and CLI wire it to wake
        # the organization's alert delivery workflow (core.alerting); None delivers on the next wake instead.
        self.alert_hook: Callable[[str], Awaitable[None]] | None = None
        # User-supplied URLs (alert webhooks, media sources) go through this guard's own pinned client.
        self.egress = EgressGuard.from_settings(settings)

    def _breaker_moved(self, provider: str, connection_id: str, old: BreakerState, new: BreakerState) -> None:
        """An open circuit makes its connection `degraded` at once (a later success heals it), and tells
        administrators once per outage (the alert is the same every time, so the store deduplicates it)."""
        if new is not BreakerState.OPEN or old is BreakerState.HALF_OPEN or connection_id == "app":
            return
        task = asyncio.get_running_loop().create_task(self._provider_down(provider, connection_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _provider_down(self, provider: str, connection_id: str) -> None:
        await self.store.run(self.store.set_health, connection_id, Health.DEGRADED,
                             {"breaker": "open", "provider": provider, "since": datetime.now(UTC).isoformat()})
        conn = await self.store.run(self.store.get_connection, connection_id)
        if conn is not None:
            await self.notify_admins(
                conn.organization_id, "provider_unavailable",
                f"{conn.integration_type} connection {conn.name!r}: {provider} is failing (circuit open); sends "
                "are held and retried until their delivery deadline", connection_id=connection_id,
                severity="warning")

    def attach_temporal(self, client: Any) -> None:
        """Hand the process's Temporal client to the plugins that want it (`Plugin.on_start`), once."""
        if self.extras.get("temporal") is client:
            return
        self.extras["temporal"] = client
        for plugin in self.registry:
            if plugin.on_start is not None:
                plugin.on_start(self, client)

    async def close(self) -> None:
        await self.http.aclose()
        await self.egress.aclose()
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.close()
        self.store.dispose()
        self.vault.close()

    def action(
        self, provider: Provider, organization_id: str, connection: str, name: str, *,
        actor: str = "workflow", target: str | None = None, prefetch: Prefetch | None = None,
    ) -> Action:
        return Action(self, provider, organization_id, connection, name, actor=actor, target=target,
                      prefetch=prefetch)

    def app_action(self, provider: Provider, organization_id: str, name: str, *, actor: str = "oauth",
                   target: str | None = None) -> AppAction:
        """A provider call for the app, not a connection (e.g. exchanging an OAuth code before the connection
        exists): through the same limiter, breaker, classifier and usage ledger."""
        return AppAction(self, provider, organization_id, "", name, actor=actor, target=target)

    def section(self, cls: type[S]) -> S:
        """A provider's settings section (`OSI_<PROVIDER>_…`)."""
        return self.settings.section(cls)

    def base_url(self, provider: Provider, connection: Connection | None = None) -> str:
        """Per-connection override first, then the provider's settings section."""
        override = connection.settings.get("base_url") if connection is not None else None
        return str(override or self.section(provider.settings).base_url)

    def credentials_path(self, connection: Connection) -> str:
        return self.vault.connection_path(connection.organization_id, connection.integration_type,
                                          connection.name)

    async def credentials_for(
        self, provider: Provider, connection: Connection, *, stale_access_token: str | None = None
    ) -> Credentials:
        """Cached credentials, refreshed ahead of expiry (once per connection across workers)."""
        path = self.credentials_path(connection)
        creds = await self.vault.read(path)
        if provider.refresh is None or not isinstance(creds, OAuth2Credentials) or creds.refresh_token is None:
            return creds
        refresh = provider.refresh

        async def do_refresh(current: OAuth2Credentials) -> OAuth2Credentials:
            return await refresh(self, provider, connection, current)

        return await self.refresher.ensure_fresh(path, do_refresh, stale_access_token=stale_access_token)

    async def notify_admins(self, organization_id: str, kind: str, message: str, *, connection_id: str | None = None,
                            severity: str = "error", action_url: str | None = None) -> AdminNotification:
        """Record an alert for the organization's administrators (deduplicated by the store), then wake its
        delivery. A failed wake is logged, never raised: the alert is recorded and a later wake delivers it."""
        if ON_TRIAL.get():
            log.info("no alert for a connection on trial: %s", message)
            return AdminNotification(organization_id=organization_id, kind=kind, message=message,
                                     connection_id=connection_id, severity=severity, action_url=action_url)
        note = await self.store.run(self.store.notify_admins, organization_id, kind, message,
                                    connection_id=connection_id, severity=severity, action_url=action_url)
        if self.alert_hook is not None:
            try:
                await self.alert_hook(organization_id)
            except Exception as exc:
                log.warning("alert %s recorded; waking its delivery failed: %s", note.id, exc)
        return note

    async def mark_unhealthy(
        self, connection: Connection, err: IntegrationError, *, reauth: bool = False, reauth_url: str | None = None
    ) -> None:
        """Configuration error: the connection turns unhealthy and administrators are told."""
        status = ConnectionStatus.NEEDS_REAUTH if reauth else None
        await self.store.run(
            self.store.set_health, connection.id, Health.UNHEALTHY,
            {"error_class": err.error_class.value, "code": err.code, "message": err.message}, status,
        )
        kind = "reauth_required" if reauth else "configuration_error"
        message = f"{connection.integration_type} connection {connection.name!r}: {err.message}"
        if reauth and reauth_url:
            message += f" — re-authenticate at {reauth_url}"
        await self.notify_admins(connection.organization_id, kind, message, connection_id=connection.id,
                                 action_url=reauth_url if reauth else None)

    async def retries_exhausted(
        self, connection: Connection, action: str, err: IntegrationError, attempts: int, elapsed: float = 0.0
    ) -> None:
        """A temporary failure outlived its action's deadline: the connection is unhealthy and administrators
        hear of it once (the message is stable, so the store's dedupe keeps repeats out)."""
        await self.store.run(
            self.store.set_health, connection.id, Health.UNHEALTHY,
            {"error_class": err.error_class.value, "code": err.code, "message": err.message,
             "action": action, "attempts": attempts, "elapsed_seconds": round(elapsed)},
        )
        await self.notify_admins(
            connection.organization_id, "retries_exhausted",
            f"{action} on {connection.integration_type}/{connection.name} gave up at its delivery deadline: "
            f"{err.message}", connection_id=connection.id)
