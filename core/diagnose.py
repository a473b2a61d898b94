"""`osi diagnose ORG [CONNECTION]`: everything an operator checks on a broken connection, and what to do.

Per connection: a live connection test, the credential's state (kind, who refreshes it, when a long-lived secret
expires), granted scopes against the provider's, the worker's breaker and limiter (scraped from its metrics
endpoint: they live in the worker process), the last day's failed calls and failed workflows (with Web UI
links), and a suggested fix. The dashboard shows the same report.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from core.connections import test_connection
from core.links import connect_link, workflow_link, workflows_link
from core.metrics import BREAKER_STATE_VALUE
from core.runtime import Runtime
from core.visibility import search_query
from store.models import Connection, ConnectionStatus
from vault.client import CredentialsMissing, VaultError
from vault.credentials import BearerTokenCredentials, OAuth2Credentials

EXPIRY_WARNING_DAYS = 7
STATE_NAMES = {v: k for k, v in BREAKER_STATE_VALUE.items()}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectionReport:
    integration_type: str
    name: str
    connection_id: str
    status: str
    health: str
    checks: list[Check] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    failed_workflows: list[dict[str, str]] = field(default_factory=list)
    failed_workflows_link: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def worker_metrics(url: str | None) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    """The worker's metrics (breakers and limiter waits live in its process); None when not reachable."""
    if not url:
        return None
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            text = (await http.get(url)).text
    except httpx.HTTPError:
        return None
    return {(s.name, frozenset(s.labels.items())): s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples}


async def diagnose(rt: Runtime, organization_id: str, connection: str | None = None, *,
                   temporal: Client | None = None, metrics_url: str | None = None,
                   run_test: bool = True) -> list[ConnectionReport]:
    """A report per connection of the organization (or the one named `name` or `TYPE/name`)."""
    conns = list(await rt.store.run(rt.store.list_connections, organization_id))
    if connection:
        itype, _, name = connection.rpartition("/")
        conns = [c for c in conns if c.name == name and (not itype or itype in (c.integration_type,
                                                                                _provider_name(rt, c)))]
    metrics = await worker_metrics(metrics_url)
    reports = []
    for conn in conns:
        reports.append(await _one(rt, conn, temporal, metrics, metrics_url, run_test))
    return reports


def _provider_name(rt: Runtime, conn: Connection) -> str:
    try:
        return rt.registry.provider_for(conn.integration_type).name
    except KeyError:
        return conn.integration_type


async def _one(rt: Runtime, conn: Connection, temporal: Client | None,
               metrics: dict[tuple[str, frozenset[tuple[str, str]]], float] | None, metrics_url: str | None,
               run_test: bool) -> ConnectionReport:
    report = ConnectionReport(conn.integration_type, conn.name, conn.id, conn.status, conn.health)
    try:
        provider = rt.registry.provider_for(conn.integration_type)
    except KeyError:
        report.checks.append(Check("provider", False, f"no registered provider for {conn.integration_type}"))
        return report
    spec = provider.spec
    reconnect = (connect_link(rt.settings, spec.install_path, conn.organization_id, conn.name)
                 if spec.install_path else None)
    rotate = (f"osi connections rotate --org {conn.organization_id} --type {conn.integration_type} "
              f"--name {conn.name} --secrets-stdin")

    # Connectivity: a real call through the pipeline.
    test: dict[str, Any] = {}
    if run_test:
        test = await test_connection(rt, conn.organization_id, conn.integration_type, conn.name, actor="diagnose")
        err = test.get("error") or {}
        detail = "the provider answered" if test.get("ok") else (
            f"{err.get('error_class', 'error')}: {err.get('message', 'failed')}"
            + (f" (code {err.get('code')})" if err.get("code") is not None else ""))
        report.checks.append(Check("connectivity", bool(test.get("ok")), detail, test))
        if not test.get("ok"):
            report.fixes += _fix_for(err, reconnect, rotate)

    # Credentials: stored, refreshable, expiry of what does not renew itself.
    try:
        creds = await rt.vault.read(rt.credentials_path(conn), use_cache=False)
    except CredentialsMissing:
        creds = None
        report.checks.append(Check("credentials", False, "no secret stored in Vault for this connection"))
        report.fixes.append(f"store its secrets: {rotate}" if not reconnect else f"reconnect: {reconnect}")
    except VaultError as exc:
        creds = None
        report.checks.append(Check("credentials", False, f"Vault did not answer: {exc}"))
        report.fixes.append(f"check Vault at {rt.settings.vault_addr} (OSI_VAULT_ADDR)")
    if creds is not None:
        refreshable = isinstance(creds, OAuth2Credentials) and creds.refresh_token is not None
        expires = getattr(creds, "expires_at", None) if not refreshable else None
        expires = expires or (conn.credentials_expire_at if not refreshable else None)
        data: dict[str, Any] = {"kind": creds.kind, "refreshes_itself": refreshable,
                                "expires_at": expires.isoformat() if expires else None}
        if refreshable:
            detail, ok = f"{creds.kind}: the access token refreshes itself (refresh token stored)", True
        elif expires is not None:
            left = expires.astimezone(UTC) - datetime.now(UTC)
            ok = left > timedelta(days=EXPIRY_WARNING_DAYS)
            detail = (f"{creds.kind}: expires {expires.isoformat(timespec='minutes')} "
                      f"({'in ' + str(left.days) + ' days' if left.total_seconds() > 0 else 'EXPIRED'}); "
                      "nothing renews it")
            if not ok:
                report.fixes.append(f"replace the secret before it expires: {reconnect or rotate}")
        else:
            detail, ok = f"{creds.kind}: long-lived, no expiry known", True
        if isinstance(creds, BearerTokenCredentials) and not creds.app_secret:
            detail += "; no app_secret: webhooks from Meta cannot be verified"
            ok = False
            report.fixes.append(f"add the app secret: {rotate}")
        report.checks.append(Check("credentials", ok, detail, data))

        # Scopes: what the provider spec needs against what the grant holds (OAuth grants report theirs).
        granted = set(creds.scopes) if isinstance(creds, OAuth2Credentials) else set()
        if spec.scopes and granted:
            missing = sorted(set(spec.scopes) - granted)
            report.checks.append(Check("scopes", not missing, "every scope granted" if not missing else
                                       f"missing {', '.join(missing)}", {"missing": missing}))
            if missing:
                report.fixes.append(f"reconnect to grant {', '.join(missing)}: {reconnect or rotate}")
        elif spec.scopes:
            report.checks.append(Check("scopes", True, "the grant does not list its scopes (not checked)"))

    # Breaker and limiter: in the worker process, read from its metrics.
    if metrics is None:
        where = f"not reachable at {metrics_url}" if metrics_url else "not configured (OSI_WORKER_METRICS_PORT=0)"
        report.checks.append(Check("breaker", True, f"worker metrics {where}: breaker and limiter state unknown "
                                   "(is the worker up? OSI_WORKER_METRICS_PORT)"))
    else:
        state = metrics.get(("osi_breaker_state", frozenset({("provider", spec.name), ("connection", conn.id)})))
        name = STATE_NAMES.get(int(state), "open") if state is not None else "closed"
        report.checks.append(Check("breaker", name == "closed", f"circuit {name} in the worker"
                                   + (" (no call failed there yet)" if state is None else ""), {"state": name}))
        if name != "closed":
            report.fixes.append(f"{spec.name} is failing (5xx, timeouts): calls wait for the circuit to close; "
                                "Temporal retries them — check the provider's status page")
        waited = metrics.get(("osi_limiter_wait_seconds_sum", frozenset({("provider", spec.name)})), 0.0)
        calls = metrics.get(("osi_limiter_wait_seconds_count", frozenset({("provider", spec.name)})), 0.0)
        report.checks.append(Check("limiter", True, f"{calls:.0f} calls waited {waited:.1f} s in total for "
                                   f"{spec.name}'s rate limits (waiting, never failing)",
                                   {"waits": calls, "seconds": waited}))

    # Recent failures: calls (the usage ledger) and workflows (Temporal visibility).
    since = datetime.now(UTC) - timedelta(days=1)
    rows = [r for r in await rt.store.run(rt.store.usage, conn.organization_id, conn.id, since) if r.outcome != "ok"]
    codes = Counter(f"{r.action} {r.outcome} {r.error_code or r.status_code or ''}".strip() for r in rows)
    report.checks.append(Check("recent_calls", not rows, f"{len(rows)} failed calls in 24 h"
                               + (": " + "; ".join(f"{k} x{n}" for k, n in codes.most_common(5)) if rows else ""),
                               {"failed": len(rows), "by_code": dict(codes)}))
    query = search_query(organization=conn.organization_id, connection=conn.name, integration=conn.integration_type,
                         outcome="failed", since=since.strftime("%Y-%m-%dT%H:%M:%SZ"))
    report.failed_workflows_link = workflows_link(rt.settings, query)
    if temporal is not None:
        try:
            async def listed() -> list[dict[str, str]]:
                out = []
                async for wf in temporal.list_workflows(query, limit=10):
                    out.append({"workflow_id": wf.id, "type": wf.workflow_type, "status": wf.status.name
                                if wf.status else "", "link": workflow_link(rt.settings, wf.id, wf.run_id)})
                return out

            report.failed_workflows = await asyncio.wait_for(listed(), timeout=5)
        except Exception as exc:
            report.checks.append(Check("workflows", True, f"Temporal not reachable ({type(exc).__name__}): failed "
                                       "workflows unknown"))
    if report.failed_workflows:
        report.checks.append(Check("workflows", False, f"{len(report.failed_workflows)} failed workflows in 24 h"))
    if conn.status == ConnectionStatus.NEEDS_REAUTH.value:
        report.fixes.insert(0, f"reconnect (the provider refused the credentials): {reconnect}" if reconnect else
                            f"replace the credentials (the provider refused them): {rotate}")
    elif conn.status == ConnectionStatus.DISABLED.value:
        report.fixes.insert(0, "the connection is disabled")
    report.fixes = list(dict.fromkeys(report.fixes))
    return report


def _fix_for(err: dict[str, Any], reconnect: str | None, rotate: str) -> list[str]:
    kind, code = err.get("error_class"), err.get("code")
    hint = (err.get("details") or {}).get("hint") if isinstance(err.get("details"), dict) else None
    if code in ("needs_reauth",) or (err.get("details") or {}).get("reauth"):
        return [f"reconnect: {reconnect}" if reconnect else f"replace the token: {rotate}"]
    if code == "credentials_missing":
        return [f"store the secrets: {rotate}" if not reconnect else f"reconnect: {reconnect}"]
    if kind == "ConfigurationError":
        return [f"an administrator must act ({code}): {hint or err.get('message')}"
                + (f" — reconnect: {reconnect}" if reconnect else f" — replace the secret: {rotate}")]
    if kind == "TemporaryError":
        return ["the provider is failing or slow right now (Temporal retries calls); test again later, and check "
                "the provider's status page"]
    if kind == "PermanentError":
        return [f"the provider refused the test request ({code}): check the connection's settings "
                "(`osi connections update`)"]
    return []
