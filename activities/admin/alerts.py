"""Administrators' alerts leave the store: to a Slack channel or DM, or to a signed webhook."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.slack.activities import SlackActivities
from activities.slack.models import PostMessageInput
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


class DeliverInput(WorkflowInput):
    """One delivery round: every due (notification, route) pair, oldest first."""
    organization_id: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    max_attempts: int = Field(default=5, ge=1, le=50)
    max_age_hours: int = Field(default=24, ge=1, le=24 * 14)


class DeliverResult(ContractModel):
    delivered: int = 0
    failed: int = 0
    gave_up: int = 0
    errors: list[str] = Field(default_factory=list)


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
    """Bound to the worker's runtime (store, Vault, pooled HTTP client, Slack through the pipeline)."""
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="admin.deliver_notifications")
    async def deliver(self, inp: DeliverInput) -> DeliverResult:
        """Send every due alert on every route once. A failing route is retried on the next round (the
        schedule), up to `max_attempts`; one route failing never blocks another."""

        alerts = AlertStore(self.rt.store)
        due = await self.rt.store.run(alerts.due, inp.max_attempts, timedelta(hours=inp.max_age_hours), inp.limit,
                                      inp.organization_id)
        result = DeliverResult()
        for n, route in due:
            error: str | None = None
            try:
                if route.kind == "slack":
                    await self._slack(n, route)
                else:
                    await self._webhook(n, route)
            except IntegrationError as exc:
                error = f"{exc.code}: {exc.message}"
            except ApplicationError as exc:  # what the pipeline raises for a classified provider error
                info = exc.details[0] if exc.details and isinstance(exc.details[0], dict) else {}
                error = f"{info.get('code', exc.type)}: {info.get('message', exc.message)}"
            d = await self.rt.store.run(alerts.record, n.id or 0, route.id, ok=error is None, error=error,
                                        max_attempts=inp.max_attempts)
            if error is None:
                result.delivered += 1
            else:
                result.failed += 1
                result.gave_up += d.status == "failed"
                result.errors.append(f"{route.kind} route {route.id}: {error}")
        return result

    async def _slack(self, n: AdminNotification, route: AlertRoute) -> None:

        t = route.target
        await SlackActivities(self.rt).post_message(PostMessageInput(
            organization_id=route.organization_id, connection=t["connection"], channel=t.get("channel"),
            user_id=t.get("user_id"), text=slack_text(n), idempotency_key=f"alert:{n.id}:{route.id}"))

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
        except httpx.HTTPError as exc:  # an unreachable receiver is this route's failure, not the round's
            raise TemporaryError(f"webhook unreachable: {type(exc).__name__}", code="unreachable") from None
        if resp.status_code >= 300:
            raise PermanentError(f"webhook answered HTTP {resp.status_code}", code=resp.status_code)

    def all(self) -> list[Any]:
        return [self.deliver]


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
