"""Administrators' alerts leave the store: to a Slack channel or DM, or to a signed webhook.

The `AdminAlertDelivery` workflow (workflows/maintenance.py) asks `admin.due_alerts` what is due and runs one
activity per (alert, route): `slack.post_message` (the Slack plugin's own activity, by name) or
`admin.deliver_webhook`; Temporal retries each with the `ALERT` policy and the workflow records the outcome.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr
from temporalio import activity

from core.contract import ContractModel, WorkflowInput
from core.egress import EgressRefused
from core.errors import IntegrationError, PermanentError, TemporaryError
from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, new_secret, sign, verify  # noqa: F401 - verify: re-export
from store.alerts import AlertStore
from vault.client import CredentialsMissing
from vault.credentials import ApiKeyCredentials

if TYPE_CHECKING:
    from core.runtime import Runtime
    from store.alerts import AlertRoute
    from store.models import AdminNotification

DELIVERY_HEADER = "X-OSI-Delivery"
SEVERITY_ICON = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}


class AlertDeliveryInput(WorkflowInput):
    """The long-lived delivery workflow of one organization (`AdminAlertDelivery`, id `osi-alerts-{org}`)."""

    organization_id: str = Field(min_length=1, max_length=128)
    max_attempts: int = Field(default=8, ge=1, le=50, description="attempts per (alert, route) before giving up")
    max_interval_seconds: float = Field(default=300, gt=0, description="longest wait between two attempts")
    max_age_hours: int = Field(default=24, ge=1, le=24 * 14, description="older alerts are not sent")
    continue_after: int = Field(default=500, ge=1, description="deliveries per run before continue-as-new")
    delivered: int = 0  # totals carried across continue-as-new
    failed: int = 0


class AlertDeliveryState(ContractModel):
    """What the workflow has done (query `state`; also its result, though it runs until cancelled)."""

    delivered: int = 0
    failed: int = 0
    in_flight: int = 0
    wakes: int = 0


class AlertRef(BaseModel):
    notification_id: int
    route_id: str


class DueInput(BaseModel):
    organization_id: str
    max_age_hours: int = 24
    limit: int = Field(default=100, ge=1, le=1000)
    exclude: list[AlertRef] = Field(default_factory=list, description="deliveries already in flight")


class AlertJob(AlertRef):
    """One (alert, route) to deliver; a Slack route carries what `slack.post_message` needs."""

    kind: Literal["slack", "webhook"]
    organization_id: str
    connection: str | None = None
    channel: str | None = None
    user_id: str | None = None
    text: str | None = None


class DeliveryRecord(AlertRef):
    status: Literal["pending", "delivered", "failed"]
    error: str | None = None
    attempts: int | None = None


class WakeInput(BaseModel):
    max_age_hours: int = 24


class RouteSpec(BaseModel):
    """What an operator asks for; validated before anything is stored."""
    kind: Literal["slack", "webhook"]
    min_severity: Literal["info", "warning", "error"] = "warning"
    connection: str | None = None  # slack: the organization's Slack connection name
    channel: str | None = None
    user_id: str | None = None
    url: str | None = None

    def target(self) -> dict[str, Any]:
        if self.kind == "slack":
            if not self.connection or (self.channel is None) == (self.user_id is None):
                raise PermanentError("slack route: give the Slack connection name and exactly one of channel "
                                     "or user_id", code="invalid_alert_route")
            return {k: v for k, v in {"connection": self.connection, "channel": self.channel,
                                      "user_id": self.user_id}.items() if v}
        if not self.url:
            raise PermanentError("webhook route: url is required", code="invalid_alert_route")
        if len(self.url) > 2048:
            raise PermanentError("url: longer than 2048 characters", code="invalid_alert_route")
        return {"url": self.url}


def payload(n: AdminNotification) -> dict[str, Any]:
    return {"id": n.id, "organization_id": n.organization_id, "connection_id": n.connection_id,
            "kind": n.kind, "severity": n.severity, "message": n.message, "action_url": n.action_url,
            "at": n.at.isoformat()}


def slack_text(n: AdminNotification) -> str:
    text = f"{SEVERITY_ICON.get(n.severity, '')} *{n.kind.replace('_', ' ')}* — {n.message}"
    if n.action_url:
        text += f"\n<{n.action_url}|Fix it here>"
    return text


class AlertActivities:
    """Bound to the worker's runtime (store, Vault, pooled HTTP client, the alert hook)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="admin.due_alerts")
    async def due(self, inp: DueInput) -> list[AlertJob]:
        """The organization's (alert, route) pairs still to deliver, oldest first, minus those in flight."""
        pairs = await self.rt.store.run(AlertStore(self.rt.store).due, timedelta(hours=inp.max_age_hours),
                                        inp.limit, inp.organization_id,
                                        [(r.notification_id, r.route_id) for r in inp.exclude])
        jobs = []
        for n, route in pairs:
            job = AlertJob(notification_id=n.id or 0, route_id=route.id, kind=route.kind,
                           organization_id=route.organization_id)
            if route.kind == "slack":
                t = route.target
                job = job.model_copy(update={"connection": t["connection"], "channel": t.get("channel"),
                                             "user_id": t.get("user_id"), "text": slack_text(n)})
            jobs.append(job)
        return jobs

    @activity.defn(name="admin.deliver_webhook")
    async def deliver_webhook(self, job: AlertJob) -> None:
        """POST the alert, signed, to the route's URL. A refusal (4xx) is permanent; 5xx, 429 and an
        unreachable receiver are retried by Temporal (each attempt is shown on the route's delivery)."""
        store = AlertStore(self.rt.store)
        try:
            n, route = await self._load(job)
            await self._webhook(n, route)
        except IntegrationError as err:
            await self.rt.store.run(store.record, job.notification_id, job.route_id, status="pending",
                                    error=f"{err.code}: {err.message}", attempts=activity.info().attempt)
            raise err.to_application_error(timedelta(seconds=err.retry_after) if err.retry_after else None) from None

    @activity.defn(name="admin.record_alert_delivery")
    async def record(self, rec: DeliveryRecord) -> None:
        await self.rt.store.run(AlertStore(self.rt.store).record, rec.notification_id, rec.route_id,
                                status=rec.status, error=rec.error, attempts=rec.attempts)

    @activity.defn(name="admin.wake_pending_alerts")
    async def wake_pending(self, inp: WakeInput) -> list[str]:
        """Wake the delivery workflow of every organization with alerts still due (the hourly sweep's safety
        net for a wake that never arrived); the organizations woken."""
        orgs = await self.rt.store.run(AlertStore(self.rt.store).pending_organizations,
                                       timedelta(hours=inp.max_age_hours))
        if self.rt.alert_hook is not None:
            for org in orgs:
                await self.rt.alert_hook(org)
        return orgs

    async def _load(self, job: AlertJob) -> tuple[AdminNotification, AlertRoute]:
        notes = await self.rt.store.run(self.rt.store.notifications, job.organization_id)
        n = next((x for x in notes if x.id == job.notification_id), None)
        routes = await self.rt.store.run(AlertStore(self.rt.store).routes, job.organization_id)
        route = next((r for r in routes if r.id == job.route_id), None)
        if n is None or route is None:
            raise PermanentError("the alert or its route was removed", code="gone")
        return n, route

    async def _webhook(self, n: AdminNotification, route: AlertRoute) -> None:
        try:
            creds = await self.rt.vault.read(self.rt.vault.alert_route_path(route.organization_id, route.id))
        except CredentialsMissing:
            creds = None
        if not isinstance(creds, ApiKeyCredentials):
            raise PermanentError("webhook route: its signing secret is missing from Vault", code="secret_missing")
        body = json.dumps(payload(n), separators=(",", ":")).encode()
        ts = str(int(time.time()))
        egress = self.rt.egress
        try:
            # Through the egress guard: the URL is the organization's input; the worker must not reach inside.
            async with egress.client.stream("POST", route.target["url"], content=body, headers={
                    "Content-Type": "application/json", TIMESTAMP_HEADER: ts, DELIVERY_HEADER: f"{n.id}:{route.id}",
                    SIGNATURE_HEADER: sign(creds.api_key.get_secret_value(), ts, body)}) as resp:
                await egress.read_capped(resp)
        except EgressRefused as exc:
            raise PermanentError(f"webhook url refused: {exc}", code="egress_refused") from None
        except httpx.HTTPError as exc:
            raise TemporaryError(f"webhook unreachable: {type(exc).__name__}", code="unreachable") from None
        if resp.status_code in RETRYABLE_STATUSES or resp.status_code >= 500:
            raise TemporaryError(f"webhook answered HTTP {resp.status_code}", code=resp.status_code,
                                 retry_after=_seconds(resp.headers.get("retry-after")))
        if resp.status_code >= 300:
            raise PermanentError(f"webhook answered HTTP {resp.status_code}", code=resp.status_code)

    def all(self) -> list[Any]:
        return [self.due, self.deliver_webhook, self.record, self.wake_pending]


RETRYABLE_STATUSES = frozenset({408, 425, 429})


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def add_route(rt: Runtime, organization_id: str, spec: RouteSpec, *, actor: str) -> tuple[AlertRoute, str | None]:
    """Store a route (a webhook's new signing secret goes to Vault and is returned once); audited."""
    target = spec.target()
    if spec.kind == "webhook":
        try:
            rt.egress.check_static(str(target["url"]))  # addresses are checked again at each delivery
        except EgressRefused as exc:
            raise PermanentError(f"url: {exc}", code="invalid_alert_route") from None
    if spec.kind == "slack":
        await rt.store.run(rt.store.find_connection, organization_id, "SLACK", str(target["connection"]))
    route = await rt.store.run(AlertStore(rt.store).add_route, organization_id, spec.kind, target, spec.min_severity,
                               actor)
    secret = None
    if spec.kind == "webhook":
        secret = new_secret()
        await rt.vault.write(rt.vault.alert_route_path(organization_id, route.id),
                             ApiKeyCredentials(api_key=SecretStr(secret)))
    await rt.store.run(rt.store.audit, organization_id, actor, "alerts.add_route", "ok", target=route.id,
                       detail={"kind": spec.kind, "min_severity": spec.min_severity, **target})
    return route, secret


async def remove_route(rt: Runtime, organization_id: str, route_id: str, *, actor: str) -> bool:
    removed = await rt.store.run(AlertStore(rt.store).remove_route, organization_id, route_id)
    if removed:
        await rt.vault.delete(rt.vault.alert_route_path(organization_id, route_id))
        await rt.store.run(rt.store.audit, organization_id, actor, "alerts.remove_route", "ok", target=route_id)
    return removed
