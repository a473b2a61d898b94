"""The operators' dashboard: server-rendered pages (Jinja2, bundled CSS, SVG charts; no script, no CDN).

Sign in once with an admin key (a session cookie remembers it), then per organization: connections with their
health, a live "Test", "Connect"/"Reconnect" for OAuth providers, expiry warnings only for credentials nothing
renews; charts of calls, errors and cost; failures linked into the Temporal Web UI; alerts and their routes; the
audit trail with paging and filters. Reads are not audited (they would drown the trail); sign-ins and every
change are. A new connection is kept only when its test passes, unless saved as untested on purpose.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlmodel import col, func, select
from temporalio.client import Client

from activities.admin.alerts import RouteSpec, add_route, remove_route
from core.connections import (
    ConnectionTestFailed,
    add_tested_connection,
    credentials_from,
    remove_connection,
    rotate_credentials,
    test_connection,
    update_settings,
)
from core.diagnose import diagnose
from core.errors import IntegrationError
from core.links import connect_link, workflow_link, workflows_link
from core.runtime import Runtime
from core.settings import Settings
from core.visibility import search_query
from gateway import charts, sessions
from store.alerts import AlertStore
from store.db import ConnectionExists, ConnectionNotFound
from store.models import AdminKey, AuditEvent, Connection, UsageRecord
from vault.client import CredentialsMissing, VaultError
from vault.credentials import OAuth2Credentials

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLASH = "osi_flash"
EXPIRY_WARNING_DAYS = 7
CHART_DAYS = 14
AUDIT_PAGE = 50


def _when(value: datetime | str | None) -> str:
    """Minutes, in UTC, without microseconds: what a person reads."""
    if value is None or value == "":
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (datetime.now(UTC) - value.astimezone(UTC)).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["ago"] = _ago


# ---- sessions ------------------------------------------------------------------------------------------
class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _key_valid(rt: Runtime, settings: Settings, session: sessions.Session) -> bool:
    """The key behind a session is still valid (revoking a key ends its sessions)."""
    kind, _, ref = session.key_ref.partition(":")
    if kind == "operator":
        key = settings.admin_api_key
        return key is not None and sessions.operator_fingerprint(key.get_secret_value()) == ref
    with rt.store.session() as s:
        row = s.get(AdminKey, ref)
    return row is not None and not row.revoked


async def current_session(request: Request) -> sessions.Session | None:
    rt = _rt(request)
    session = await asyncio.to_thread(sessions.decode, rt, request.cookies.get(sessions.COOKIE))
    if session is None or not await asyncio.to_thread(_key_valid, rt, _settings(request), session):
        return None
    return session


async def require(request: Request, organization_id: str | None = None) -> sessions.Session:
    session = await current_session(request)
    if session is None:
        raise SignInRequired
    if organization_id is not None and not session.may_access(organization_id):
        raise HTTPException(403, f"your key is not allowed for organization {organization_id}")
    return session


async def require_form(request: Request, organization_id: str, csrf: str) -> sessions.Session:
    """A change: a session for this organization and the form's CSRF token."""
    session = await require(request, organization_id)
    if not sessions.csrf_ok(_rt(request), session, csrf):
        raise HTTPException(403, "the form's CSRF token is missing or not this session's: reload the page")
    return session


def _actor(session: sessions.Session) -> str:
    return f"dashboard:{session.label}"


def _redirect(url: str, flash: str | None = None, *, error: bool = False) -> RedirectResponse:
    resp = RedirectResponse(url, status_code=303)
    if flash:
        resp.set_cookie(FLASH, quote(("!" if error else "") + flash[:600]), max_age=60, httponly=True,
                        samesite="strict", path="/dashboard")
    return resp


def _page(request: Request, name: str, session: sessions.Session | None, status: int = 200,
          **context: Any) -> HTMLResponse:
    flash = unquote(request.cookies.get(FLASH, "")) or None
    resp = TEMPLATES.TemplateResponse(request, name, {
        "session": session, "csrf": sessions.csrf_token(_rt(request), session) if session else "",
        "flash": flash.lstrip("!") if flash else None, "flash_error": bool(flash and flash.startswith("!")),
        "temporal_ui": _settings(request).temporal_ui_url, **context}, status_code=status)
    if flash:
        resp.delete_cookie(FLASH, path="/dashboard")
    return resp


# ---- data ----------------------------------------------------------------------------------------------
async def _connection_rows(rt: Runtime, settings: Settings, org: str) -> list[dict[str, Any]]:
    rows = []
    now = datetime.now(UTC)
    for c in await rt.store.run(rt.store.list_connections, org):
        spec = rt.registry.provider_for(c.integration_type).spec if c.integration_type in \
            rt.registry.integration_types() else None
        refreshes = False
        expires: datetime | None = c.credentials_expire_at
        stored = True
        try:
            creds = await rt.vault.read(rt.credentials_path(c))
            refreshes = isinstance(creds, OAuth2Credentials) and creds.refresh_token is not None
            expires = None if refreshes else (getattr(creds, "expires_at", None) or expires)
        except CredentialsMissing:
            stored = False
        except VaultError:
            stored = True  # unknown; the page says Vault did not answer through diagnose
        credential = "refreshes itself" if refreshes else "long-lived"
        warning = None
        if not stored:
            warning = "no secret stored"
        elif expires is not None and not refreshes:
            left = expires.astimezone(UTC) - now
            credential = f"expires {_when(expires)}"
            if left.total_seconds() <= 0:
                warning = "expired"
            elif left < timedelta(days=EXPIRY_WARNING_DAYS):
                warning = f"expires in {max(1, math.ceil(left.total_seconds() / 86400))} days"
        test = (c.health_detail or {}).get("test")
        rows.append({
            "c": c, "spec": spec, "credential": credential, "warning": warning,
            "oauth": bool(spec and spec.install_path),
            "reconnect": connect_link(settings, spec.install_path, org, c.name) if spec and spec.install_path
            else None,
            "test": test, "test_error": (test or {}).get("error") if isinstance(test, dict) else None,
            "anchor": f"conn-{c.id}",
        })
    return rows


def _series(labels: list[str], groups: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    return {name: [by_day.get(day, 0.0) for day in labels] for name, by_day in sorted(groups.items())}


def _charts(rows: list[UsageRecord], names: dict[str, str]) -> dict[str, str]:
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=i)).isoformat() for i in range(CHART_DAYS - 1, -1, -1)]
    calls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    errors: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cost_by_category: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cost_by_connection: dict[str, float] = defaultdict(float)
    currencies: set[str] = set()
    for r in rows:
        day = r.at.astimezone(UTC).date().isoformat()
        calls[r.outcome][day] += 1
        who = names.get(r.connection_id or "", "app") if r.connection_id else "app"
        if r.outcome != "ok":
            errors[who][day] += 1
        if r.cost_amount:
            cost_by_category[r.category or "uncategorized"][day] += r.cost_amount
            cost_by_connection[who] += r.cost_amount
            currencies.add(r.currency or "USD")
    unit = "/".join(sorted(currencies)) or "USD"
    return {
        "calls": charts.stacked_bars("chart-calls", f"Provider calls per day by outcome ({CHART_DAYS} days)", days,
                                     _series(days, calls), colors=charts.OUTCOME_COLORS),
        "errors": charts.stacked_bars("chart-errors", "Failed calls per day by connection", days,
                                      _series(days, errors)),
        "cost": charts.stacked_bars("chart-cost", f"Cost per day by category ({unit})", days,
                                    _series(days, cost_by_category), unit=unit),
        "cost_connections": charts.horizontal_bars("chart-cost-connections", f"Cost per connection ({unit})",
                                                   list(cost_by_connection.items()), unit=unit),
    }


async def _failed_workflows(temporal: Client | None, settings: Settings, org: str) -> list[dict[str, str]]:
    """The organization's failed workflows of the last day, from Temporal visibility (our search attributes)."""
    if temporal is None:
        return []
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[dict[str, str]] = []

    async def collect() -> None:
        async for wf in temporal.list_workflows(search_query(organization=org, outcome="failed", since=since),
                                                limit=20):
            out.append({"id": wf.id, "type": wf.workflow_type, "status": wf.status.name if wf.status else "",
                        "started": _when(wf.start_time), "link": workflow_link(settings, wf.id, wf.run_id)})

    try:
        await asyncio.wait_for(collect(), timeout=3)
    except Exception:  # Temporal down or the attributes unregistered: the page shows the rest
        return out
    return out


def _failed_calls(rt: Runtime, settings: Settings, org: str) -> list[dict[str, Any]]:
    since = datetime.now(UTC) - timedelta(days=1)
    with rt.store.session() as s:
        events = s.exec(select(AuditEvent).where(
            AuditEvent.organization_id == org, AuditEvent.outcome != "ok", AuditEvent.at >= since,
            col(AuditEvent.actor).like("workflow:%")).order_by(col(AuditEvent.id).desc()).limit(50)).all()
    out = []
    for e in events:
        wf_id = e.actor.removeprefix("workflow:")
        out.append({"e": e, "workflow_id": wf_id, "link": workflow_link(settings, wf_id),
                    "code": (e.detail or {}).get("code"), "message": (e.detail or {}).get("message")})
    return out


def _audit_page(rt: Runtime, org: str, actor: str | None, action: str | None, outcome: str | None,
                page: int) -> tuple[list[AuditEvent], int]:
    with rt.store.session() as s:
        q = select(AuditEvent).where(AuditEvent.organization_id == org)
        if actor:
            q = q.where(col(AuditEvent.actor).contains(actor))
        if action:
            q = q.where(col(AuditEvent.action).contains(action))
        if outcome:
            q = q.where(AuditEvent.outcome == outcome)
        total = s.exec(select(func.count()).select_from(q.subquery())).one()
        rows = s.exec(q.order_by(col(AuditEvent.id).desc()).offset((page - 1) * AUDIT_PAGE).limit(AUDIT_PAGE)).all()
    return list(rows), int(total)


def _providers(rt: Runtime) -> tuple[list[Any], list[Any]]:
    """(providers added with secrets, providers connected through OAuth consent)."""
    specs = [p.provider.spec for p in rt.registry.providers() if p.provider is not None]
    return [s for s in specs if not s.install_path], [s for s in specs if s.install_path]


# ---- routes --------------------------------------------------------------------------------------------
def router() -> APIRouter:
    r = APIRouter()

    @r.get("/dashboard", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            return _page(request, "login.html", None)
        if session.organization_id is not None:
            return _redirect(f"/dashboard/orgs/{quote(session.organization_id)}")
        rt = _rt(request)
        orgs = sorted({c.organization_id for c in await rt.store.run(rt.store.list_connections, None)})
        return _page(request, "orgs.html", session, orgs=orgs)

    @r.get("/dashboard/go")
    async def go(request: Request, org: str) -> Response:
        await require(request)
        return _redirect(f"/dashboard/orgs/{quote(org.strip())}")

    @r.post("/dashboard/login")
    async def login(request: Request, key: str = Form(""), organization: str = Form("")) -> Response:
        rt, settings = _rt(request), _settings(request)
        key, organization = key.strip(), organization.strip()
        operator = settings.admin_api_key
        found: AdminKey | None = None
        if operator is not None and key and hmac.compare_digest(key.encode(), operator.get_secret_value().encode()):
            session = sessions.new_session(f"operator:{sessions.operator_fingerprint(key)}", "operator", None)
        elif key and (found := await rt.store.run(rt.store.find_admin_key, key)) is not None:
            session = sessions.new_session(f"key:{found.id}", found.label, found.organization_id)
        else:
            return _page(request, "login.html", None, status=401,
                         error="that admin key is not valid (issue one with `osi admin issue-key --org ORG "
                               "--label NAME`)")
        await rt.store.run(rt.store.audit, session.organization_id or organization or "*", _actor(session),
                           "dashboard.sign_in", "ok")
        target = session.organization_id or organization
        resp = _redirect(f"/dashboard/orgs/{quote(target)}" if target else "/dashboard")
        resp.set_cookie(sessions.COOKIE, await asyncio.to_thread(sessions.encode, rt, session),
                        max_age=sessions.SESSION_SECONDS, httponly=True, samesite="strict", path="/dashboard",
                        secure=sessions.secure_cookie(settings.gateway_public_url))
        return resp

    @r.post("/dashboard/logout")
    async def logout(request: Request, csrf: str = Form("")) -> Response:
        session = await current_session(request)
        if session is not None and sessions.csrf_ok(_rt(request), session, csrf):
            resp = _redirect("/dashboard", "signed out")
            resp.delete_cookie(sessions.COOKIE, path="/dashboard")
            return resp
        return _redirect("/dashboard")

    @r.get("/dashboard/orgs/{org}", response_class=HTMLResponse)
    async def overview(request: Request, org: str) -> Response:
        session = await require(request, org)
        rt, settings = _rt(request), _settings(request)
        conns = await _connection_rows(rt, settings, org)
        names = {row["c"].id: f"{row['c'].integration_type}/{row['c'].name}" for row in conns}
        since = datetime.now(UTC) - timedelta(days=CHART_DAYS)
        usage = list(await rt.store.run(rt.store.usage, org, None, since))
        notes = [n for n in await rt.store.run(rt.store.notifications, org) if not n.acknowledged]
        secret_specs, oauth_specs = _providers(rt)
        since_day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _page(request, "overview.html", session, org=org, connections=conns, notifications=notes[-50:][::-1],
                     charts=_charts(usage, names),
                     failed_workflows=await _failed_workflows(getattr(request.app.state, "temporal", None),
                                                              settings, org),
                     failed_calls=await asyncio.to_thread(_failed_calls, rt, settings, org),
                     all_failed_link=workflows_link(settings, search_query(organization=org, outcome="failed",
                                                                           since=since_day)),
                     secret_specs=secret_specs, oauth_specs=oauth_specs)

    @r.get("/dashboard/orgs/{org}/connections/{itype}/{name}", response_class=HTMLResponse)
    async def connection(request: Request, org: str, itype: str, name: str) -> Response:
        session = await require(request, org)
        rt, settings = _rt(request), _settings(request)
        try:
            conn: Connection = await rt.store.run(rt.store.find_connection, org, itype, name)
        except ConnectionNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        spec = rt.registry.provider_for(itype).spec
        metrics = f"http://{settings.host}:{settings.worker_metrics_port}/metrics" if settings.worker_metrics_port \
            else None
        reports = await diagnose(rt, org, f"{itype}/{name}", temporal=getattr(request.app.state, "temporal", None),
                                 metrics_url=metrics, run_test=False)
        report = reports[0] if reports else None
        return _page(request, "connection.html", session, org=org, conn=conn, spec=spec, report=report,
                     reconnect=connect_link(settings, spec.install_path, org, name) if spec.install_path else None)

    @r.post("/dashboard/orgs/{org}/connections/{itype}/{name}/test")
    async def test(request: Request, org: str, itype: str, name: str, csrf: str = Form(""),
                   back: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        result = await test_connection(_rt(request), org, itype, name, actor=_actor(session))
        err = result.get("error") or {}
        message = f"{itype}/{name}: test passed" if result.get("ok") else (
            f"{itype}/{name}: test failed — {err.get('message', 'error')}"
            + (f" (code {err.get('code')})" if err.get("code") is not None else ""))
        return _redirect(_back(back, org), message, error=not result.get("ok"))

    @r.post("/dashboard/orgs/{org}/connections")
    async def add(request: Request, org: str, csrf: str = Form(""), integration_type: str = Form(...),
                  name: str = Form("default"), keep_untested: bool = Form(False)) -> Response:
        session = await require_form(request, org, csrf)
        rt = _rt(request)
        form = await request.form()
        try:
            spec = rt.registry.provider_for(integration_type).spec
        except KeyError as exc:
            return _redirect(f"/dashboard/orgs/{quote(org)}", str(exc.args[0]), error=True)
        settings = {k.removeprefix("setting."): str(v).strip() for k, v in form.items()
                    if k.startswith("setting.") and str(v).strip()}
        secrets = {k.removeprefix("secret."): str(v) for k, v in form.items() if k.startswith("secret.") and str(v)}
        try:
            creds = credentials_from(spec.auth_kind, secrets)
            conn, result = await add_tested_connection(rt, org, integration_type, name.strip() or "default", settings,
                                                  creds, actor=_actor(session), keep_untested=keep_untested)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(x) for x in e["loc"]) for e in exc.errors())
            return _redirect(f"/dashboard/orgs/{quote(org)}", f"not saved: the secrets do not fit ({fields})",
                             error=True)
        except ConnectionTestFailed as exc:
            return _redirect(f"/dashboard/orgs/{quote(org)}", f"not saved: the connection test failed — {exc}. "
                             "Fix the values, or tick “save without a passing test”.", error=True)
        except (ConnectionExists, ValueError) as exc:
            return _redirect(f"/dashboard/orgs/{quote(org)}", f"not saved: {exc}", error=True)
        note = "tested and saved" if result.get("ok") else "saved without a passing test"
        return _redirect(f"/dashboard/orgs/{quote(org)}#conn-{conn.id}",
                         f"{conn.integration_type}/{conn.name}: {note}")

    @r.post("/dashboard/orgs/{org}/connect/{itype}")
    async def connect(request: Request, org: str, itype: str, csrf: str = Form(""),
                      name: str = Form("default")) -> Response:
        session = await require_form(request, org, csrf)
        rt, settings = _rt(request), _settings(request)
        spec = rt.registry.provider_for(itype).spec
        if not spec.install_path:
            raise HTTPException(422, f"{itype} does not connect through OAuth")
        await rt.store.run(rt.store.audit, org, _actor(session), "dashboard.connect", "ok",
                           target=f"{itype}/{name.strip() or 'default'}")
        return RedirectResponse(connect_link(settings, spec.install_path, org, name.strip() or "default"),
                                status_code=303)

    @r.post("/dashboard/orgs/{org}/connections/{itype}/{name}/settings")
    async def save_settings(request: Request, org: str, itype: str, name: str, csrf: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        rt = _rt(request)
        form = await request.form()
        conn = await rt.store.run(rt.store.find_connection, org, itype, name)
        changes = {k.removeprefix("setting."): str(v).strip() for k, v in form.items() if k.startswith("setting.")}
        new_key, new_value = str(form.get("new_key") or "").strip(), str(form.get("new_value") or "").strip()
        if new_key:
            changes[new_key] = new_value
        unset = [k for k, v in changes.items() if v == ""]
        typed = {k: _typed(v, conn.settings.get(k)) for k, v in changes.items() if v != ""}
        back = f"/dashboard/orgs/{quote(org)}/connections/{quote(itype)}/{quote(name)}"
        try:
            await update_settings(rt, org, itype, name, typed, unset, actor=_actor(session))
        except ValueError as exc:
            return _redirect(back, f"not saved: {exc}", error=True)
        return _redirect(back, "settings saved")

    @r.post("/dashboard/orgs/{org}/connections/{itype}/{name}/rotate")
    async def rotate(request: Request, org: str, itype: str, name: str, csrf: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        rt = _rt(request)
        form = await request.form()
        spec = rt.registry.provider_for(itype).spec
        secrets = {k.removeprefix("secret."): str(v) for k, v in form.items() if k.startswith("secret.") and str(v)}
        back = f"/dashboard/orgs/{quote(org)}/connections/{quote(itype)}/{quote(name)}"
        try:
            await rotate_credentials(rt, org, itype, name, credentials_from(spec.auth_kind, secrets),
                                     actor=_actor(session))
        except (ValidationError, ValueError, CredentialsMissing) as exc:
            return _redirect(back, f"not replaced: {exc}", error=True)
        result = await test_connection(rt, org, itype, name, actor=_actor(session))
        ok = bool(result.get("ok"))
        return _redirect(back, "secrets replaced; test passed" if ok else
                         f"secrets replaced; the test failed: {(result.get('error') or {}).get('message')}",
                         error=not ok)

    @r.post("/dashboard/orgs/{org}/connections/{itype}/{name}/remove")
    async def remove(request: Request, org: str, itype: str, name: str, csrf: str = Form(""),
                     confirm: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        if confirm != name:
            return _redirect(f"/dashboard/orgs/{quote(org)}/connections/{quote(itype)}/{quote(name)}",
                             f"not removed: type the connection's name ({name}) to confirm", error=True)
        outcome = await remove_connection(_rt(request), org, itype, name, actor=_actor(session))
        revoked = "revoked at the provider" if outcome.get("revoked") else "not revoked at the provider"
        return _redirect(f"/dashboard/orgs/{quote(org)}", f"{itype}/{name} removed ({revoked})")

    @r.post("/dashboard/orgs/{org}/notifications/{notification_id}/ack")
    async def ack(request: Request, org: str, notification_id: int, csrf: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        rt = _rt(request)
        if await rt.store.run(rt.store.acknowledge_notification, org, notification_id):
            await rt.store.run(rt.store.audit, org, _actor(session), "notification.acknowledge", "ok",
                               target=str(notification_id))
        return _redirect(f"/dashboard/orgs/{quote(org)}", "acknowledged")

    @r.get("/dashboard/orgs/{org}/audit", response_class=HTMLResponse)
    async def audit(request: Request, org: str, actor: str = "", action: str = "", outcome: str = "",
                    page: int = 1) -> Response:
        session = await require(request, org)
        page = max(1, page)
        rows, total = await asyncio.to_thread(_audit_page, _rt(request), org, actor.strip(), action.strip(),
                                              outcome.strip(), page)
        pages = max(1, math.ceil(total / AUDIT_PAGE))
        query = "&".join(f"{k}={quote(v)}" for k, v in (("actor", actor), ("action", action),
                                                          ("outcome", outcome)) if v)
        return _page(request, "audit.html", session, org=org, rows=rows, total=total, page=page, pages=pages,
                     actor=actor, action=action, outcome=outcome, query=query)

    @r.get("/dashboard/orgs/{org}/alerts", response_class=HTMLResponse)
    async def alerts(request: Request, org: str) -> Response:
        session = await require(request, org)
        rt = _rt(request)
        store = AlertStore(rt.store)
        routes = await rt.store.run(store.routes, org)
        deliveries = []
        for n in list(await rt.store.run(rt.store.notifications, org))[-30:][::-1]:
            for d in await rt.store.run(store.deliveries, n.id or 0):
                deliveries.append({"n": n, "d": d})
        slack = [c for c in await rt.store.run(rt.store.list_connections, org) if c.integration_type == "SLACK"]
        return _page(request, "alerts.html", session, org=org, routes=routes, deliveries=deliveries,
                     slack_connections=slack, workflow=workflow_link(_settings(request), f"osi-alerts-{org}"))

    @r.post("/dashboard/orgs/{org}/alert-routes")
    async def add_alert_route(request: Request, org: str, csrf: str = Form(""), kind: str = Form(...),
                              url: str = Form(""), connection: str = Form(""), channel: str = Form(""),
                              min_severity: str = Form("warning")) -> Response:
        session = await require_form(request, org, csrf)
        back = f"/dashboard/orgs/{quote(org)}/alerts"
        try:
            spec = RouteSpec.model_validate({"kind": kind, "min_severity": min_severity, "url": url or None,
                                             "connection": connection or None, "channel": channel or None})
            _, secret = await add_route(_rt(request), org, spec, actor=_actor(session))
        except ValidationError as exc:
            return _redirect(back, f"not added: {exc.errors()[0]['msg']}", error=True)
        except (IntegrationError, ConnectionNotFound) as exc:
            return _redirect(back, f"not added: {getattr(exc, 'message', exc)}", error=True)
        # Shown this once: the receiver needs it to check X-OSI-Signature; Vault keeps the only other copy.
        return _redirect(back, f"route added; signing secret (shown once): {secret}" if secret else "route added")

    @r.post("/dashboard/orgs/{org}/alert-routes/{route_id}/remove")
    async def remove_alert_route(request: Request, org: str, route_id: str, csrf: str = Form("")) -> Response:
        session = await require_form(request, org, csrf)
        removed = await remove_route(_rt(request), org, route_id, actor=_actor(session))
        return _redirect(f"/dashboard/orgs/{quote(org)}/alerts", "route removed" if removed else "no such route",
                         error=not removed)

    return r


def _back(back: str, org: str) -> str:
    """Only our own dashboard pages are places to go back to."""
    return back if back.startswith(f"/dashboard/orgs/{quote(org)}") else f"/dashboard/orgs/{quote(org)}"


def _typed(value: str, before: Any) -> Any:
    """A setting keeps its type: a number stays a number, a flag a flag, JSON (an object or list) JSON; text
    (phone number ids are digits) stays text."""
    if isinstance(before, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if (isinstance(before, int | float) or value[:1] in "[{") and not isinstance(before, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def sign_in_redirect(request: Request, exc: Exception) -> Response:
    """The exception handler for SignInRequired."""
    return RedirectResponse("/dashboard", status_code=303)
