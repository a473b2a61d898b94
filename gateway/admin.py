"""Admin API: authenticated, scoped to one organization, every request audited."""

from __future__ import annotations

import hmac
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from activities.admin.alerts import RouteSpec, add_route, remove_route
from activities.events import service as events
from activities.events.models import SubscriptionSpec
from core.connections import add_connection, remove_connection, test_connection
from core.errors import IntegrationError
from core.links import connect_link
from store import audit as audit_chain
from store.alerts import AlertStore
from store.db import ConnectionExists, ConnectionNotFound
from store.events import EventStore
from store.models import AdminKey, UsageRecord
from vault.credentials import Credentials

EXPIRY_WARNING_DAYS = 7


class NewConnection(BaseModel):
    """A connection with secrets given directly (WhatsApp system-user token, app secret, verify token)."""

    integration_type: str
    name: str = Field(default="default", min_length=1, max_length=128)
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)


class Principal:
    """Who is calling: the operator key (every organization) or an organization's key."""

    def __init__(self, label: str, organization_id: str | None) -> None:
        self.label = label
        self.organization_id = organization_id

    def may_access(self, organization_id: str) -> bool:
        return self.organization_id is None or self.organization_id == organization_id


async def principal(request: Request) -> Principal:
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not given:
        raise HTTPException(401, "missing bearer admin key")
    operator = request.app.state.settings.admin_api_key
    if operator is not None and hmac.compare_digest(given.encode(), operator.get_secret_value().encode()):
        return Principal("operator", None)
    rt = request.app.state.rt
    key: AdminKey | None = await rt.store.run(rt.store.find_admin_key, given)
    if key is None:
        raise HTTPException(401, "unknown or revoked admin key")
    return Principal(f"key:{key.label}", key.organization_id)


ORG_ID = r"^[A-Za-z0-9_.@-]{1,128}$"  # what Vault paths and OpenSyte ids allow
NAME = r"^[A-Za-z0-9_.@-]{1,128}$"


async def org_scope(request: Request, organization_id: str = PathParam(pattern=ORG_ID),
                    who: Principal = Depends(principal)) -> Principal:
    """Refuse other organizations' data and audit every admin read or write."""
    if not who.may_access(organization_id):
        raise HTTPException(403, f"this key is not allowed for organization {organization_id}")
    rt = request.app.state.rt
    await rt.store.run(rt.store.audit, organization_id, f"admin:{who.label}",
                       f"admin.{request.method.lower()} {request.url.path.split(organization_id, 1)[-1]}", "ok")
    return who


def summarize_usage(rows: list[UsageRecord]) -> list[dict[str, Any]]:
    """Per day, provider and action: calls, outcomes, latency percentiles, cost units and amounts."""
    groups: dict[tuple[str, str, str], list[UsageRecord]] = defaultdict(list)
    for r in rows:
        groups[(r.at.date().isoformat(), r.provider, r.action)].append(r)
    out = []
    for (day, provider, action), items in sorted(groups.items()):
        lat = sorted(r.latency_ms for r in items)
        outcomes: dict[str, int] = defaultdict(int)
        for r in items:
            outcomes[r.outcome] += 1
        out.append({
            "day": day, "provider": provider, "action": action, "calls": len(items),
            "outcomes": dict(outcomes),
            "latency_ms_p50": round(statistics.median(lat), 2),
            "latency_ms_p95": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 2),
            "cost_units": round(sum(r.cost_units for r in items), 4),
            "cost_amount": round(sum(r.cost_amount or 0 for r in items), 6),
        })
    return out


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/orgs/{organization_id}/connections")
    async def connections(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                          ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        now = datetime.now(UTC)
        out = []
        for c in await rt.store.run(rt.store.list_connections, organization_id):
            exp = c.credentials_expire_at
            out.append({
                **c.model_dump(mode="json"),
                "expiry_warning": exp is not None and exp - now < timedelta(days=EXPIRY_WARNING_DAYS),
            })
        return out

    @r.post("/orgs/{organization_id}/connections", status_code=201)
    async def add(organization_id: str, body: NewConnection, request: Request,
                  who: Principal = Depends(org_scope)) -> dict[str, Any]:
        """API-key and bearer-token connections (WhatsApp). OAuth providers connect through their install
        link instead, which this answers with (their tokens must come from the provider's consent screen)."""
        settings = request.app.state.settings
        rt = request.app.state.rt
        try:
            spec = rt.registry.provider_for(body.integration_type).spec
        except KeyError as exc:
            raise HTTPException(422, exc.args[0]) from None
        if spec.install_path is not None:
            raise HTTPException(422, {"message": f"{body.integration_type} connects through OAuth consent",
                                      "install_url": connect_link(settings, spec.install_path, organization_id,
                                                                  body.name, requested_by=f"admin:{who.label}")})
        try:
            creds = TypeAdapter(Credentials).validate_python({"kind": spec.auth_kind, **body.secrets})
            conn = await add_connection(request.app.state.rt, organization_id, body.integration_type, body.name,
                                        body.settings, creds, actor=f"admin:{who.label}")
        except ValidationError as exc:
            # The message names the fields, never their values.
            raise HTTPException(422, f"secrets do not fit {spec.auth_kind} credentials: "
                                     f"{[e['loc'] for e in exc.errors()]}") from None
        except ConnectionExists as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return conn.model_dump(mode="json")

    @r.delete("/orgs/{organization_id}/connections/{integration_type}/{name}")
    async def remove(organization_id: str, request: Request, integration_type: str = PathParam(max_length=64),
                     name: str = PathParam(pattern=NAME), revoke: bool = True,
                     who: Principal = Depends(org_scope)) -> dict[str, Any]:
        """Revoke at the provider where it can be, then delete the secrets and the connection."""
        try:
            return await remove_connection(request.app.state.rt, organization_id, integration_type, name,
                                           actor=f"admin:{who.label}", revoke=revoke)
        except (ConnectionNotFound, ValueError) as exc:
            raise HTTPException(404, str(exc)) from None

    @r.post("/orgs/{organization_id}/connections/{integration_type}/{name}/test")
    async def test(organization_id: str, request: Request, integration_type: str = PathParam(max_length=64),
                   name: str = PathParam(pattern=NAME), who: Principal = Depends(org_scope)) -> dict[str, Any]:
        rt = request.app.state.rt
        try:
            rt.registry.provider_for(integration_type)
        except KeyError:
            raise HTTPException(404, f"unknown integration type {integration_type!r}") from None
        try:
            await rt.store.run(rt.store.find_connection, organization_id, integration_type, name)
        except ConnectionNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return await test_connection(rt, organization_id, integration_type, name, actor=f"admin:{who.label}")

    @r.get("/orgs/{organization_id}/usage")
    async def usage(organization_id: str, request: Request, days: int = 7, _: Principal = Depends(org_scope)
                    ) -> dict[str, Any]:
        rt = request.app.state.rt
        since = datetime.now(UTC) - timedelta(days=max(1, min(days, 90)))
        rows = list(await rt.store.run(rt.store.usage, organization_id, None, since))
        return {"since": since.isoformat(), "rows": summarize_usage(rows)}

    @r.get("/orgs/{organization_id}/audit")
    async def audit(organization_id: str, request: Request, limit: int = 100, _: Principal = Depends(org_scope)
                    ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        events = await rt.store.run(rt.store.audit_log, organization_id, None, max(1, min(limit, 1000)))
        return [e.model_dump(mode="json") for e in events]

    @r.get("/orgs/{organization_id}/audit/verify")
    async def audit_verify(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                           ) -> dict[str, Any]:
        """The organization's audit hash chain, recomputed: ok, rows, and the first broken row."""
        rt = request.app.state.rt
        result = await rt.store.run(rt.store.verify_audit, organization_id)
        return dict(result.as_dict())

    @r.get("/orgs/{organization_id}/audit/export", response_model=None)
    async def audit_export(organization_id: str, request: Request, since: datetime | None = None,
                           until: datetime | None = None, format: Literal["json", "csv"] = "json",
                           _: Principal = Depends(org_scope)) -> dict[str, Any] | Response:
        """Audit rows in [since, until) with the chain's verification (CSV: the verification in the
        `X-OSI-Audit-Verified` header, and the first broken row in `X-OSI-Audit-Broken`)."""
        rt = request.app.state.rt
        since, until = (t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t for t in (since, until))
        rows = audit_chain.export_rows(await rt.store.run(rt.store.audit_range, organization_id, since, until))
        result = await rt.store.run(rt.store.verify_audit, organization_id)
        if format == "csv":
            headers = {"X-OSI-Audit-Verified": "true" if result.ok else "false",
                       "Content-Disposition": 'attachment; filename="audit.csv"'}
            if result.broken:
                b = result.broken[0]
                headers["X-OSI-Audit-Broken"] = f"id={b.id} seq={b.seq}"
            return Response(audit_chain.to_csv(rows), media_type="text/csv", headers=headers)
        return {"organization_id": organization_id, "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None, "verification": result.as_dict(), "rows": rows}

    @r.get("/orgs/{organization_id}/notifications")
    async def notifications(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                            ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        return [n.model_dump(mode="json") for n in await rt.store.run(rt.store.notifications, organization_id)]

    @r.post("/orgs/{organization_id}/notifications/{notification_id}/ack")
    async def ack(organization_id: str, request: Request, notification_id: int = PathParam(ge=1, le=2**63 - 1),
                  _: Principal = Depends(org_scope)) -> dict[str, bool]:
        rt = request.app.state.rt
        if not await rt.store.run(rt.store.acknowledge_notification, organization_id, notification_id):
            raise HTTPException(404, "no such notification in this organization")
        return {"ok": True}

    @r.get("/orgs/{organization_id}/alert-routes")
    async def alert_routes(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                           ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        return [a.model_dump(mode="json") for a in await rt.store.run(AlertStore(rt.store).routes, organization_id)]

    @r.post("/orgs/{organization_id}/alert-routes", status_code=201)
    async def add_alert_route(organization_id: str, spec: RouteSpec, request: Request,
                              who: Principal = Depends(org_scope)) -> dict[str, Any]:
        """A webhook route's signing secret is in the answer, once; Vault keeps the only other copy."""
        try:
            route, secret = await add_route(request.app.state.rt, organization_id, spec, actor=f"admin:{who.label}")
        except IntegrationError as exc:
            raise HTTPException(422, exc.message) from None
        except ConnectionNotFound as exc:
            raise HTTPException(422, str(exc)) from None
        return {**route.model_dump(mode="json"), **({"signing_secret": secret} if secret else {})}

    @r.delete("/orgs/{organization_id}/alert-routes/{route_id}")
    async def remove_alert_route(organization_id: str, request: Request, route_id: str = PathParam(pattern=NAME),
                                 who: Principal = Depends(org_scope)) -> dict[str, bool]:
        if not await remove_route(request.app.state.rt, organization_id, route_id, actor=f"admin:{who.label}"):
            raise HTTPException(404, "no such alert route in this organization")
        return {"ok": True}

    # ---- event subscriptions (signed events to OpenSyte) -----------------------------------------
    @r.get("/orgs/{organization_id}/event-subscriptions")
    async def event_subscriptions(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                                  ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        return [s.model_dump(mode="json") for s in await rt.store.run(EventStore(rt.store).subscriptions,
                                                                        organization_id)]

    @r.post("/orgs/{organization_id}/event-subscriptions", status_code=201)
    async def add_event_subscription(organization_id: str, spec: SubscriptionSpec, request: Request,
                                     who: Principal = Depends(org_scope)) -> dict[str, Any]:
        """The signing secret is in the answer, once; Vault keeps the only other copy."""
        try:
            sub, secret = await events.add_subscription(request.app.state.rt, organization_id, spec,
                                                        actor=f"admin:{who.label}")
        except IntegrationError as exc:
            raise HTTPException(422, exc.message) from None
        return {**sub.model_dump(mode="json"), "signing_secret": secret}

    @r.delete("/orgs/{organization_id}/event-subscriptions/{subscription_id}")
    async def remove_event_subscription(organization_id: str, subscription_id: str, request: Request,
                                        who: Principal = Depends(org_scope)) -> dict[str, bool]:
        if not await events.remove_subscription(request.app.state.rt, organization_id, subscription_id,
                                                actor=f"admin:{who.label}"):
            raise HTTPException(404, "no such event subscription in this organization")
        return {"ok": True}

    @r.post("/orgs/{organization_id}/event-subscriptions/{subscription_id}/rotate-secret")
    async def rotate_event_secret(organization_id: str, subscription_id: str, request: Request,
                                  who: Principal = Depends(org_scope)) -> dict[str, str]:
        secret = await events.rotate_secret(request.app.state.rt, organization_id, subscription_id,
                                            actor=f"admin:{who.label}")
        if secret is None:
            raise HTTPException(404, "no such event subscription in this organization")
        return {"signing_secret": secret}

    @r.post("/orgs/{organization_id}/event-subscriptions/{subscription_id}/test", status_code=202)
    async def test_event_subscription(organization_id: str, subscription_id: str, request: Request,
                                      _: Principal = Depends(org_scope)) -> dict[str, bool]:
        if not await events.send_test(request.app.state.rt, organization_id, subscription_id):
            raise HTTPException(404, "no such event subscription in this organization")
        return {"queued": True}

    @r.get("/orgs/{organization_id}/event-deliveries")
    async def event_deliveries(organization_id: str, request: Request, subscription_id: str | None = None,
                               status: str | None = None, limit: int = 100, _: Principal = Depends(org_scope)
                               ) -> list[dict[str, Any]]:
        rt = request.app.state.rt
        rows = await rt.store.run(EventStore(rt.store).deliveries, organization_id, subscription_id, status,
                                  max(1, min(limit, 500)))
        return [r.model_dump(mode="json") for r in rows]

    @r.get("/orgs/{organization_id}/diagnostics")
    async def diagnostics(organization_id: str, request: Request, _: Principal = Depends(org_scope)
                          ) -> dict[str, Any]:
        """Recent failed calls per connection, with their classified codes (for debugging)."""
        rt = request.app.state.rt
        since = datetime.now(UTC) - timedelta(days=1)
        rows = [r for r in await rt.store.run(rt.store.usage, organization_id, None, since) if r.outcome != "ok"]
        by_conn: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows[-200:]:
            by_conn[row.connection_id].append({"at": row.at.isoformat(), "action": row.action,
                                               "outcome": row.outcome, "status": row.status_code,
                                               "code": row.error_code})
        return {"failures_last_24h": by_conn}

    return r
