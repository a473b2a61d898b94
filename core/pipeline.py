"""The action pipeline every provider call goes through: resolve, credentials, gates, limit,
breaker, HTTP, classify, record."""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from temporalio import activity

from core.breaker import Breaker
from core.errors import ConfigurationError, ErrorClass, IntegrationError, TemporaryError
from core.limiter import Concurrency, Limit, Spacing
from core.links import connect_link
from core.metrics import LIMITER_WAIT, PROVIDER_CALLS, PROVIDER_LATENCY
from core.policies import past_deadline, retry_delay
from store.db import ConnectionNotFound, Writer
from store.models import AuditEvent, Connection, ConnectionStatus, Health, UsageRecord
from vault.client import CredentialsMissing, VaultError
from vault.credentials import Credentials, OAuth2Credentials

if TYPE_CHECKING:
    from sqlmodel import Session

    from core.plugin import Provider
    from core.runtime import Runtime

# Reads an action needs besides its connection, made in the same store round trip: (session, connection) -> data.
Prefetch = Callable[["Session", Connection], Any]

log = logging.getLogger("osi.pipeline")


@dataclass
class Response:
    """A provider answer that the plugin classified as success."""

    status_code: int
    headers: Mapping[str, str]
    body: Any
    latency_ms: float

    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


@dataclass
class CallResult:
    """What happened on one call, kept for usage rows (flushed once per action)."""

    usage: list[UsageRecord] = field(default_factory=list)


Gate = Callable[["Action"], Awaitable[None]]


def _parse_body(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, jsonlib.JSONDecodeError):
        return resp.text


class Action:
    """One action of one activity on one connection; use as `async with rt.action(...) as act`."""

    def __init__(
        self,
        rt: Runtime,
        provider: Provider,
        organization_id: str,
        connection_name: str,
        name: str,
        *,
        actor: str = "workflow",
        target: str | None = None,
        prefetch: Prefetch | None = None,
    ) -> None:
        self.rt = rt
        self.provider = provider
        self.organization_id = organization_id
        self.connection_name = connection_name
        self.name = name
        self.actor = actor
        self.target = target
        self.connection: Connection
        self._credentials: Credentials | None = None
        self._usage: list[UsageRecord] = []
        self.detail: dict[str, Any] = {}
        self.calls = 0
        self._prefetch = prefetch
        self.prefetched: Any = None
        # Read here, on the event loop: a prefetch runs on a store thread, where the activity context is not set.
        self._activity_identity: str | None = None
        if activity.in_activity():
            info = activity.info()
            self._activity_identity = f"{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"
        self._writers: list[Writer] = []

    # ---- 1. resolve ----------------------------------------------------------------------
    async def __aenter__(self) -> Action:
        if activity.in_activity():
            self.actor = f"workflow:{activity.info().workflow_id}"
        try:
            self.connection, self.prefetched = await self.rt.store.run(self._resolve)
        except ConnectionNotFound as exc:
            # Resolution is scoped to the organization, so another organization's connection
            # with the same name is "not found" here: it can never be used across tenants.
            raise ConfigurationError(str(exc), code="connection_not_found",
                                     provider=self.provider.spec.name).to_application_error() from None
        if self.connection.status == ConnectionStatus.NEEDS_REAUTH.value:
            raise ConfigurationError(
                f"connection {self.connection_name!r} needs re-authentication"
                + (f": {self.reauth_url()}" if self.reauth_url() else ""),
                code="needs_reauth",
                provider=self.provider.spec.name,
            ).to_application_error() from None
        if self.connection.status == ConnectionStatus.DISABLED.value:
            raise ConfigurationError(f"connection {self.connection_name!r} is disabled",
                                     code="disabled", provider=self.provider.spec.name).to_application_error()
        return self

    def _resolve(self) -> tuple[Connection, Any]:
        """The connection and the action's prefetched reads, in one store round trip (a thread hop each costs
        more than the queries under load)."""
        with self.rt.store.session() as s:
            conn = self.rt.store.find_connection_in(s, self.organization_id, self.provider.integration_type,
                                                    self.connection_name)
            usable = conn.status not in (ConnectionStatus.NEEDS_REAUTH.value, ConnectionStatus.DISABLED.value)
            return conn, self._prefetch(s, conn) if self._prefetch is not None and usable else None

    def defer(self, write: Writer) -> None:
        """Write this with the action's own bookkeeping, in its one transaction at the end (success or failure):
        the message record, the intent's outcome. Durable once the action's `async with` block is left."""
        self._writers.append(write)

    def reauth_url(self) -> str | None:
        """Where an administrator re-authenticates this connection (OAuth providers)."""
        if self.provider.spec.install_path is None:
            return None
        return connect_link(self.rt.settings, self.provider.spec.install_path, self.organization_id,
                            self.connection_name)

    @property
    def settings(self) -> dict[str, Any]:
        return self.connection.settings

    def base_url(self) -> str:
        return self.rt.base_url(self.provider, self.connection)

    def idempotency_key(self, explicit: str | None, *parts: str) -> str | None:
        """A key scoped to this organization and connection; without an explicit key, the activity's
        identity (workflow, run, activity id) so Temporal's own retries never repeat a side effect."""
        return self.key_for(self.connection_id, explicit, *parts)

    def key_for(self, connection_id: str | None, explicit: str | None, *parts: str) -> str | None:
        """`idempotency_key` for a given connection id (a `prefetch` runs before `self.connection` is set)."""
        base = explicit or self._activity_identity
        if base is None:
            return None
        return ":".join([self.organization_id, connection_id or "app", self.name, base, *parts])

    @property
    def connection_id(self) -> str | None:
        """None for an app-level action (an OAuth code exchange before any connection exists)."""
        return self.connection.id

    # ---- 2. credentials ------------------------------------------------------------------
    async def credentials(self, *, stale_access_token: str | None = None) -> Credentials:
        if self._credentials is not None and stale_access_token is None:
            return self._credentials
        try:
            self._credentials = await self.rt.credentials_for(
                self.provider, self.connection, stale_access_token=stale_access_token
            )
        except CredentialsMissing:
            raise ConfigurationError(
                f"no credentials stored for connection {self.connection_name!r}",
                code="credentials_missing", provider=self.provider.spec.name,
            ) from None
        except VaultError as exc:
            raise TemporaryError(str(exc), code="vault_unavailable", provider="vault") from None
        return self._credentials

    # ---- 3. compliance gates --------------------------------------------------------------
    async def gate(self, *gates: Gate) -> None:
        """Run compliance gates (each raises a classified error to refuse the action)."""
        for g in gates:
            await g(self)

    # ---- 4-7. limit, breaker, HTTP, classify, record ---------------------------------------
    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        limits: Sequence[Limit] = (),
        concurrency: Sequence[Concurrency] = (),
        spacing: Sequence[Spacing] = (),
        cost_units: float = 1.0,
        category: str | None = None,
        reference: Callable[[Any], str | None] | None = None,
        authenticate: bool = True,
    ) -> Response:
        """One provider call; raises a classified IntegrationError on failure."""
        once = functools.partial(
            self._call_once, method, url, json=json, params=params, data=data, files=files, headers=headers,
            limits=limits, concurrency=concurrency, spacing=spacing, cost_units=cost_units, category=category,
            reference=reference, authenticate=authenticate)
        try:
            return await once()
        except IntegrationError as err:
            if not authenticate or not (err.details.get("refresh") or err.details.get("reauth")):
                raise
            used = await self.credentials()
            # Rotated elsewhere (`osi connections rotate` on another process, another worker's refresh): our
            # cached copy is stale. Read Vault itself and, if the secret changed, try once with it.
            if await self._reread_credentials(used):
                return await once()
            # An expired access token with a refreshable credential: refresh once and retry once.
            if not (err.details.get("refresh") and self.provider.refresh is not None
                    and isinstance(used, OAuth2Credentials) and used.refresh_token is not None):
                raise
            await self.credentials(stale_access_token=used.access_token.get_secret_value())
            return await once()

    async def _reread_credentials(self, used: Credentials) -> bool:
        """Vault's current secret, bypassing every cache; True (and adopted) when it differs from `used`."""
        try:
            fresh = await self.rt.vault.read(self.rt.credentials_path(self.connection), use_cache=False)
        except (CredentialsMissing, VaultError):
            return False
        if fresh == used:
            return False
        log.info("credentials of %s/%s changed in Vault: retrying with them", self.provider.name,
                 self.connection_name)
        self._credentials = fresh
        return True

    async def _call_once(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        files: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        limits: Sequence[Limit],
        concurrency: Sequence[Concurrency],
        spacing: Sequence[Spacing],
        cost_units: float,
        category: str | None,
        reference: Callable[[Any], str | None] | None,
        authenticate: bool,
    ) -> Response:
        spec = self.provider.spec
        req_headers = dict(headers or {})
        if authenticate:
            req_headers.update(self.provider.auth_headers(await self.credentials()))
        # The slot is held until the answer: the provider counted the request somewhere in between.
        slot = await self.rt.limiter.take(limits)
        if limits:
            LIMITER_WAIT.labels(spec.name).observe(slot.waited)
        breaker = self.rt.breakers.get(spec.name, self.connection_id or "app")
        try:
            trial = breaker.before_call(f"{spec.name}/{self.connection_name}")
        except BaseException:
            await self.rt.limiter.release(slot)
            raise
        self.calls += 1
        t0 = time.perf_counter()
        status: int | None = None
        body: Any = None
        resp_headers: Mapping[str, str] = {}
        err: IntegrationError | None
        try:
            async with self.rt.limiter.spaced(spacing), self.rt.limiter.concurrency(concurrency):
                t0 = time.perf_counter()  # latency is the provider's, not our queueing
                resp = await self.rt.http.request(
                    method, url, json=json, params=params, data=data, files=files, headers=req_headers
                )
            status, resp_headers, body = resp.status_code, resp.headers, _parse_body(resp)
            err = self.provider.classify(status, resp_headers, body)
            if err is not None and err.retry_after is None:
                err.retry_after = _retry_after(resp_headers.get(spec.retry_after_header))
        except httpx.TimeoutException as exc:
            # A request that was sent may have been processed: callers that must not repeat it reconcile
            # before sending again (`uncertain`). A request that never left (connect/pool timeout) was not.
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            err = TemporaryError(f"{spec.name} timed out", code="timeout", details={"uncertain": sent})
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            err = TemporaryError(f"{spec.name} unreachable: {type(exc).__name__}", code="transport_error",
                                 details={"uncertain": sent})
        finally:
            if trial and breaker.trial_in_flight:
                breaker.release()  # cancelled while the trial was out: the circuit must not stay half-open
            await self.rt.limiter.release(slot)
        if err is not None and limits and (status == 429 or err.code in spec.throttle_codes):
            # Throttled all the same (another client on the number, a limit lowered by the provider):
            # pause these keys for Retry-After, or a second, before the next call.
            await self.rt.limiter.penalize(limits, err.retry_after)
        latency = (time.perf_counter() - t0) * 1000
        self._settle(breaker, method, url, status, latency, err, cost_units=cost_units, category=category,
                     reference=reference(body) if (reference and err is None) else None)
        if err is not None:
            raise err
        return Response(status or 0, resp_headers, body, latency)

    async def external(self, method: str, url: str, fn: Callable[[], Any],
                       classify: Callable[[Any], IntegrationError | None]) -> Any:
        """A call a vendor SDK makes on its own blocking transport (MSAL's token endpoint): it runs in a
        thread behind the same breaker, and its outcome is classified, logged and recorded like `call`."""
        breaker = self.rt.breakers.get(self.provider.name, self.connection_id or "app")
        breaker.before_call(f"{self.provider.name}/{self.connection_name}")
        self.calls += 1
        t0 = time.perf_counter()
        result: Any = None
        try:
            result = await asyncio.to_thread(fn)
            err = classify(result)
        except IntegrationError as exc:
            err = exc
        latency = (time.perf_counter() - t0) * 1000
        self._settle(breaker, method, url, None, latency, err)
        if err is not None:
            raise err
        return result

    def _settle(self, breaker: Breaker, method: str, url: str, status: int | None, latency: float,
                err: IntegrationError | None, *, cost_units: float = 1.0, category: str | None = None,
                reference: str | None = None) -> None:
        """Breaker, metrics, the usage row and the log line of one finished call."""
        spec = self.provider.spec
        if err is not None:
            err.provider = err.provider or spec.name
        # Only provider-side trouble trips the breaker; 4xx and throttling are not outages.
        provider_down = err is not None and err.error_class is ErrorClass.TEMPORARY and (
            status is None or status >= 500)
        breaker.record(healthy=not provider_down)
        PROVIDER_CALLS.labels(spec.name, self.name, "ok" if err is None else err.error_class.value).inc()
        PROVIDER_LATENCY.labels(spec.name, self.name).observe(latency / 1000)
        self._usage.append(
            UsageRecord(
                organization_id=self.organization_id,
                connection_id=self.connection_id,
                provider=spec.name,
                action=self.name,
                outcome="ok" if err is None else err.error_class.value,
                status_code=status,
                error_code=None if err is None or err.code is None else str(err.code),
                latency_ms=round(latency, 2),
                cost_units=cost_units,
                category=category,
                reference=reference,
            )
        )
        self._log_call(method, url, status, latency, err)

    def _log_call(self, method: str, url: str, status: int | None, latency: float,
                  err: IntegrationError | None) -> None:
        """One line per provider call: DEBUG when it worked, INFO/WARNING when it did not. Fields, not
        prose, so a JSON log pipeline can filter them; the URL's query string is dropped (never a secret)."""
        fields = {"provider": self.provider.spec.name, "action": self.name, "organization_id": self.organization_id,
                  "connection": self.connection_name, "method": method, "path": httpx.URL(url).path,
                  "status": status, "latency_ms": round(latency, 1)}
        if err is None:
            log.debug("provider call ok", extra={"osi": fields})
            return
        fields |= {"error_class": err.error_class.value, "code": err.code, "retry_after": err.retry_after}
        level = logging.WARNING if err.error_class is ErrorClass.CONFIGURATION else logging.INFO
        log.log(level, "provider call failed: %s", err.message, extra={"osi": fields})

    # ---- exit: convert, record, alert ----------------------------------------------------
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            if self.connection_id is not None and self.connection.health != Health.HEALTHY.value and self.calls:
                self.defer(functools.partial(self.rt.store.set_health_in, connection_id=self.connection.id,
                                             health=Health.HEALTHY, detail={"last_ok_action": self.name}))
            await self._record(outcome="ok")
            return
        if not isinstance(exc, IntegrationError):
            await self._record(outcome="error", detail={"error": type(exc).__name__})
            return  # unexpected bugs propagate as-is (Temporal retries them as failures)
        await self._record(outcome=exc.error_class.value, detail=exc.to_dict())
        if exc.error_class is ErrorClass.CONFIGURATION and self.connection_id is not None:
            await self.rt.mark_unhealthy(self.connection, exc, reauth=bool(exc.details.get("reauth")),
                                         reauth_url=self.reauth_url())
        if exc.error_class is not ErrorClass.TEMPORARY:
            raise exc.to_application_error() from None
        attempt, elapsed, delay, past = _deadline(exc.retry_after)
        if past:
            # The next attempt would start after the action's deadline: stop here, with the last cause, and
            # tell administrators once (the store deduplicates the alert).
            exc.details = {**exc.details, "deadline_exceeded": True, "attempts": attempt,
                           "elapsed_seconds": round(elapsed)}
            if self.connection_id is not None:
                await self.rt.retries_exhausted(self.connection, self.name, exc, attempt, elapsed)
            raise exc.to_application_error(final=True) from None
        raise exc.to_application_error(timedelta(seconds=delay)) from None

    async def flush_usage(self) -> None:
        """Write pending usage rows now (long batch actions call this between batches)."""
        if not self._usage:
            return
        rows, self._usage = self._usage, []
        await self.rt.store.run(self.rt.store.record_usages, rows)

    async def _record(self, outcome: str, detail: dict[str, Any] | None = None) -> None:
        """Usage rows, connection counters and the audit event in one transaction."""
        rows, self._usage = self._usage, []
        writers, self._writers = self._writers, []
        event = AuditEvent(
            organization_id=self.organization_id, actor=self.actor, action=self.name, outcome=outcome,
            connection_id=self.connection_id, target=self.target, detail={**self.detail, **(detail or {})},
        )
        await self.rt.store.run(self.rt.store.record_action, rows, event, writers)


def _deadline(retry_after: float | None) -> tuple[int, float, float, bool]:
    """(attempt, seconds since the first attempt, the delay before the next attempt, whether that next attempt
    would miss the deadline).

    Outside an activity (CLI, gateway) there is no retry and no deadline: a temporary failure is reported to
    the caller and nobody is alerted. In an activity the deadline is its schedule-to-close timeout minus one
    attempt (see `core.policies.ActivityOptions.kwargs`)."""
    if not activity.in_activity():
        return 1, 0.0, retry_delay(1, retry_after), False
    info = activity.info()
    now = datetime.now(UTC)
    elapsed = (now - info.scheduled_time).total_seconds()
    delay = retry_delay(info.attempt, retry_after)
    if info.schedule_to_close_timeout is None:
        max_attempts = info.retry_policy.maximum_attempts if info.retry_policy else 0
        return info.attempt, elapsed, delay, bool(max_attempts) and info.attempt >= max_attempts
    deadline = info.schedule_to_close_timeout - (info.start_to_close_timeout or timedelta(0))
    return info.attempt, elapsed, delay, past_deadline(info.scheduled_time, deadline, now, delay)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (fractional allowed, Graph sends '2.128'); garbage is ignored."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class AppAction(Action):
    """A provider call made for the app rather than a connection (OAuth code exchange, token refresh of a
    connection being created): limited, broken, classified and recorded like any other, without resolving
    a connection or reading its credentials (the caller authenticates the request itself)."""

    async def __aenter__(self) -> Action:
        if activity.in_activity():
            self.actor = f"workflow:{activity.info().workflow_id}"
        return self

    @property
    def connection_id(self) -> str | None:
        return None

    @property
    def settings(self) -> dict[str, Any]:
        return {}

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Recorded like any action; a classified failure stays an IntegrationError for the caller (a gateway
        route, or the enclosing Action of a token refresh, which converts it for Temporal)."""
        if exc is None:
            await self._record(outcome="ok")
        elif isinstance(exc, IntegrationError):
            await self._record(outcome=exc.error_class.value, detail=exc.to_dict())
        else:
            await self._record(outcome="error", detail={"error": type(exc).__name__})

    def base_url(self) -> str:
        return self.rt.base_url(self.provider)

    async def credentials(self, *, stale_access_token: str | None = None) -> Credentials:
        raise ConfigurationError("an app-level call carries its own authentication", code="no_connection",
                                 provider=self.provider.name)
