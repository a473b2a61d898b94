"""`osi`: the operator CLI (connections, schemas, processes, per-provider commands)."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hvac
import requests
import typer
import uvicorn
from hvac.exceptions import VaultError as HvacError
from rich.table import Table

from core.cli import OsiGroup, console, errors, fail, registry, run_with_runtime, use
from core.connections import (
    add_connection,
    credentials_from,
    masked_credentials,
    remove_connection,
    rotate_credentials,
    test_connection,
    update_settings,
)
from core.diagnose import diagnose
from core.inbox import REPLAY_SCOPE_KEY
from core.logs import configure_logging
from core.plugin import ProviderSpec, Registry
from core.settings import get_settings
from core.temporal import connect
from gateway.app import create_app as create_gateway
from sandbox.app import create_app as create_sandbox
from store import audit as audit_chain
from store import inbox
from store.db import make_engine
from vault.bootstrap import bootstrap
from worker import dev, main
from worker.migrate import current, head, upgrade
from worker.registry import registry as default_registry
from worker.schemas import export_schemas

processes = typer.Typer(no_args_is_help=True)
connections = typer.Typer(help="Manage integration connections (secrets go to Vault only)", no_args_is_help=True)
schema = typer.Typer(help="JSON Schemas of workflow inputs and results", no_args_is_help=True)
admin = typer.Typer(help="Admin API keys", no_args_is_help=True)
db = typer.Typer(help="The store's schema (Alembic migrations)", no_args_is_help=True)
webhooks = typer.Typer(help="Verified deliveries the gateway could not process, kept for replay",
                       no_args_is_help=True)
audit = typer.Typer(help="The tamper-evident audit log (hash chain per organization)", no_args_is_help=True)
# Commands that need no Vault credentials: `dev` is development mode itself; the others touch no secret.
NO_CREDENTIALS = {"dev", "sandbox", "schema", "db", "vault"}  # vault: sets Vault up with its own admin token
vault_cli = typer.Typer(help="Set up Vault/OpenBao for this service", no_args_is_help=True)


def build_cli(plugins: Registry) -> typer.Typer:
    """The `osi` command tree: the core groups, then each plugin's own group (found through `plugins`)."""
    # Plain usage errors ("Error: Invalid value for --type: …"), not a box wrapped at 80 columns.
    root = typer.Typer(help="OpenSyte Integrations operator CLI", no_args_is_help=True, cls=OsiGroup,
                       rich_markup_mode=None)

    @root.callback()
    def main(ctx: typer.Context,
             debug: bool = typer.Option(False, "--debug", help="show the traceback of an error")) -> None:
        use(plugins, debug=debug)  # what core.cli.registry() hands to every command
        if ctx.invoked_subcommand not in NO_CREDENTIALS:
            get_settings().require("cli")

    root.registered_commands += processes.registered_commands
    root.add_typer(connections, name="connections")
    root.add_typer(schema, name="schema")
    root.add_typer(admin, name="admin")
    root.add_typer(db, name="db")
    root.add_typer(audit, name="audit")
    root.add_typer(webhooks, name="webhooks")
    root.add_typer(vault_cli, name="vault")
    root.command("diagnose")(diagnose_cmd)
    for plugin in plugins:
        if plugin.cli is not None:
            root.add_typer(plugin.cli())
    return root


def _parse_settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expects key=value, got {pair!r}", param_hint="--setting")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _credentials(kind: str, secrets: dict[str, Any]) -> Any:
    try:
        return credentials_from(kind, secrets)
    except ValueError as exc:  # pydantic's message names the fields, never their values
        errs: list[Any] = getattr(exc, "errors", lambda: [])()
        fields = ", ".join(".".join(str(x) for x in e.get("loc", ())) for e in errs) or str(exc)
        raise typer.BadParameter(f"the secrets do not fit {kind} credentials (check: {fields})",
                                 param_hint="--secrets-stdin") from None


def _spec(integration_type: str) -> ProviderSpec:
    try:
        return registry().provider_for(integration_type).spec
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0], param_hint="--type") from None


def _read_secrets(fields: tuple[str, ...], from_stdin: bool) -> dict[str, Any]:
    """Secrets as a JSON object on stdin (values keep their JSON types: a service account key stays an object,
    `scopes` a list) or prompted hidden, one per field the provider asks for."""
    if from_stdin:
        try:
            data = json.loads(sys.stdin.read() or "{}")
        except ValueError as exc:
            raise typer.BadParameter(f"stdin is not JSON: {exc}", param_hint="--secrets-stdin") from None
        if not isinstance(data, dict):
            raise typer.BadParameter("stdin must hold a JSON object of secrets", param_hint="--secrets-stdin")
        return data
    return {f: typer.prompt(f, hide_input=True, default="", show_default=False) for f in fields}


@connections.command("add")
def connections_add(
    org: str = typer.Option(..., "--org", help="OpenSyte organization id"),
    type_: str = typer.Option(..., "--type", help="WHATSAPP_BUSINESS | SLACK | GOOGLE_CALENDAR | OUTLOOK_CALENDAR"),
    name: str = typer.Option("default", "--name"),
    setting: list[str] = typer.Option([], "--setting", help="non-secret key=value (repeatable)"),
    secrets_stdin: bool = typer.Option(False, "--secrets-stdin", help="read secrets as a JSON object on stdin"),
) -> None:
    """Add a connection; secrets are prompted (hidden) or read from stdin, never echoed."""
    spec = _spec(type_)
    secrets = {k: v for k, v in _read_secrets(spec.secret_settings, secrets_stdin).items() if v not in ("", None)}
    creds = _credentials(spec.auth_kind, secrets)
    conn = run_with_runtime(lambda rt: add_connection(rt, org, type_, name, _parse_settings(setting), creds))
    console.print(f"added {conn.integration_type}/{conn.name} for {conn.organization_id} (id {conn.id})")


@connections.command("list")
def connections_list(
    org: str | None = typer.Option(None, "--org"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List connections with their status and health."""
    async def go(rt: Any) -> Any:
        return await rt.store.run(rt.store.list_connections, org)

    rows = run_with_runtime(go)
    if as_json:
        console.print_json(data=[c.model_dump(mode="json") for c in rows])
        return
    if not rows:
        async def orgs(rt: Any) -> list[str]:
            return sorted({c.organization_id for c in await rt.store.run(rt.store.list_connections, None)})

        known = run_with_runtime(orgs)
        where = f"in organization {org!r}" if org else "at all"
        close = difflib.get_close_matches(org, known, n=3, cutoff=0.6) if org else []
        hint = (f"; did you mean {', '.join(close)}?" if close else
                f"; organizations with connections: {', '.join(known[:10])}{', …' if len(known) > 10 else ''}"
                if known and org else "")
        errors.print(f"no connections {where}{hint} (add one with `osi connections add`)", markup=False)
        return
    table = Table("organization", "type", "name", "status", "health", "requests", "errors", "id")
    for c in rows:
        table.add_row(c.organization_id, c.integration_type, c.name, c.status, c.health,
                      str(c.request_count), str(c.error_count), c.id)
    console.print(table)


@connections.command("show")
def connections_show(
    org: str = typer.Option(..., "--org"), type_: str = typer.Option(..., "--type"),
    name: str = typer.Option("default", "--name"),
    as_json: bool = typer.Option(True, "--json", help="machine-readable output (the only format)"),
) -> None:
    """One connection with settings, health and masked credentials."""
    itype = _spec(type_).integration_type

    async def go(rt: Any) -> dict[str, Any]:
        conn = await rt.store.run(rt.store.find_connection, org, itype, name)
        return {**conn.model_dump(mode="json"), "credentials": await masked_credentials(rt, conn)}

    console.print_json(data=run_with_runtime(go))


@connections.command("test")
def connections_test(
    org: str = typer.Option(..., "--org"), type_: str = typer.Option(..., "--type"),
    name: str = typer.Option("default", "--name"),
    as_json: bool = typer.Option(True, "--json", help="machine-readable output (the only format)"),
) -> None:
    """A real provider call through the pipeline; records the connection's health."""
    itype = _spec(type_).integration_type

    async def go(rt: Any) -> dict[str, Any]:
        await rt.store.run(rt.store.find_connection, org, itype, name)  # unknown: one line, not a "test failed"
        return await test_connection(rt, org, itype, name)

    result = run_with_runtime(go)
    console.print_json(data=result)
    raise typer.Exit(0 if result.get("ok") else 1)


@connections.command("rotate")
def connections_rotate(
    org: str = typer.Option(..., "--org"), type_: str = typer.Option(..., "--type"),
    name: str = typer.Option("default", "--name"),
    secrets_stdin: bool = typer.Option(False, "--secrets-stdin", help="read secrets as a JSON object on stdin"),
) -> None:
    """Replace a connection's secrets (new Vault version); re-enables a connection that needed re-auth."""
    spec = _spec(type_)
    secrets = {k: v for k, v in _read_secrets(spec.secret_settings, secrets_stdin).items() if v not in ("", None)}
    creds = _credentials(spec.auth_kind, secrets)
    conn = run_with_runtime(lambda rt: rotate_credentials(rt, org, type_, name, creds))
    console.print(f"rotated credentials of {conn.integration_type}/{conn.name}")


@connections.command("update")
def connections_update(
    org: str = typer.Option(..., "--org"), type_: str = typer.Option(..., "--type"),
    name: str = typer.Option("default", "--name"),
    setting: list[str] = typer.Option([], "--setting", help="non-secret key=value to set (repeatable; JSON values "
                                                          "kept as JSON)"),
    unset: list[str] = typer.Option([], "--unset", help="a setting to remove (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print the connection as JSON"),
) -> None:
    """Change a connection's settings in place (secrets: `osi connections rotate`)."""
    if not setting and not unset:
        raise typer.BadParameter("give --setting key=value or --unset key", param_hint="--setting")
    spec = _spec(type_)
    conn = run_with_runtime(lambda rt: update_settings(rt, org, spec.integration_type, name,
                                                       _parse_settings(setting), list(unset)))
    if as_json:
        console.print_json(data=conn.model_dump(mode="json"))
        return
    console.print(f"updated {conn.integration_type}/{conn.name}: settings {json.dumps(conn.settings, sort_keys=True)}",
                  markup=False, highlight=False)


@connections.command("remove")
def connections_remove(
    org: str = typer.Option(..., "--org"), type_: str = typer.Option(..., "--type"),
    name: str = typer.Option("default", "--name"), yes: bool = typer.Option(False, "--yes"),
    revoke: bool = typer.Option(True, "--revoke/--no-revoke", help="revoke the grant at the provider first"),
) -> None:
    """Revoke the grant at the provider (Slack, Google), then delete the connection and its secrets in Vault."""
    itype = _spec(type_).integration_type
    if not yes:
        typer.confirm(f"remove {itype}/{name} of {org} and delete its secrets?", abort=True)
    outcome = run_with_runtime(lambda rt: remove_connection(rt, org, itype, name, revoke=revoke))
    revoked = "revoked at the provider" if outcome.get("revoked") else "not revoked at the provider"
    why = outcome.get("note") or outcome.get("error")
    console.print(f"removed ({revoked}{': ' + why if why else ''})")


@admin.command("issue-key")
def admin_issue_key(
    org: str | None = typer.Option(None, "--org", help="organization the key is limited to (omit: every org)"),
    label: str = typer.Option(..., "--label", help="who holds the key (shown in the audit trail)"),
) -> None:
    """Issue an admin API key; it is printed once and only its hash is stored."""
    async def go(rt: Any) -> str:
        key: str = await rt.store.run(rt.store.issue_admin_key, org, label)
        await rt.store.run(rt.store.audit, org or "*", "operator", "admin.issue_key", "ok", target=label)
        return key

    console.print(run_with_runtime(go))


@db.command("upgrade")
def db_upgrade(revision: str = typer.Option("head", "--revision", help="target revision")) -> None:
    """Migrate the store at OSI_DATABASE_URL (the worker, gateway and `make run` also do it at start)."""
    console.print(f"store at revision {upgrade(get_settings().database_url, revision)}")


@db.command("current")
def db_current(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The store's revision and the newest one this release knows."""
    engine = make_engine(get_settings().database_url)
    try:
        with engine.connect() as conn:
            rev = current(conn)
    finally:
        engine.dispose()
    if as_json:
        console.print_json(data={"revision": rev, "head": head()})
        return
    console.print(f"store at {rev or 'no revision (empty)'}; newest {head()}")


@webhooks.command("list")
def webhooks_list(provider: str | None = typer.Option(None, "--provider"),
                  all_: bool = typer.Option(False, "--all", help="replayed ones too")) -> None:
    """Deliveries kept for replay (raw bodies are not printed)."""
    rows = run_with_runtime(lambda rt: rt.store.run(inbox.pending, rt.store, None, provider, all_))
    console.print_json(data=[r.model_dump(mode="json", exclude={"body"}) for r in rows])


@webhooks.command("replay")
def webhooks_replay(delivery_id: int | None = typer.Option(None, "--id", help="one delivery (default: all pending)"),
                    provider: str | None = typer.Option(None, "--provider", help="whatsapp | slack | …")) -> None:
    """Run kept deliveries through their route again, in this process (their signatures were checked when they
    arrived); each is marked replayed or failed. Exit 1 when any still fails."""
    async def go(rt: Any) -> list[dict[str, Any]]:
        client = await connect(rt.settings)
        gw = create_gateway(rt.settings, rt=rt, temporal=client)
        gw.state.rt, gw.state.temporal = rt, client  # what the lifespan would set
        out = []
        for row in await rt.store.run(inbox.pending, rt.store, delivery_id, provider):
            async def marked(scope: Any, receive: Any, send: Any, row_id: int = row.id or 0) -> None:
                await gw({**scope, REPLAY_SCOPE_KEY: row_id}, receive, send)

            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=marked), base_url="http://replay") as http:
                resp = await http.post(row.route, content=row.body,
                                       headers={"Content-Type": row.content_type or "application/json"})
            ok = resp.status_code < 300
            await rt.store.run(inbox.mark, rt.store, row.id or 0, ok=ok, error=None if ok else resp.text[:500])
            out.append({"id": row.id, "provider": row.provider, "route": row.route, "status": resp.status_code,
                        "ok": ok, **({} if ok else {"error": resp.text[:500]})})
        return out

    results = run_with_runtime(go)
    console.print_json(data=results)
    raise typer.Exit(0 if all(r["ok"] for r in results) else 1)


@audit.command("verify")
def audit_verify(org: str | None = typer.Option(None, "--org", help="one organization's chain (default: all)"),
                 ) -> None:
    """Recompute the audit hash chains; exit 1 and name the first broken row of each broken chain."""
    result = run_with_runtime(lambda rt: rt.store.run(rt.store.verify_audit, org))
    console.print_json(data=result.as_dict())
    for b in result.broken:
        console.print(f"[red]organization {b.organization_id}: first broken row id={b.id} seq={b.seq}: {b.reason}[/]")
    raise typer.Exit(0 if result.ok else 1)


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{what}: {value!r} is not an ISO 8601 date or time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@audit.command("export")
def audit_export(
    org: str | None = typer.Option(None, "--org", help="one organization (default: all)"),
    since: str | None = typer.Option(None, "--since", help="ISO 8601 start (inclusive, UTC unless given)"),
    until: str | None = typer.Option(None, "--until", help="ISO 8601 end (exclusive)"),
    fmt: str = typer.Option("json", "--format", help="json | csv"),
    out: str | None = typer.Option(None, "--out", help="file to write (default: standard output)"),
) -> None:
    """Export audit rows of a time range with the chain verification (JSON: one document; CSV: rows, and the
    verification on standard error). Exit 1 when a chain is broken."""
    if fmt not in ("json", "csv"):
        raise typer.BadParameter("--format must be json or csv")
    start, end = _when(since, "--since"), _when(until, "--until")

    async def go(rt: Any) -> tuple[list[dict[str, Any]], Any]:
        rows = await rt.store.run(rt.store.audit_range, org, start, end)
        return audit_chain.export_rows(rows), await rt.store.run(rt.store.verify_audit, org)

    rows, result = run_with_runtime(go)
    if fmt == "csv":
        text = audit_chain.to_csv(rows)
        typer.echo(json.dumps({"verification": result.as_dict()}), err=True)
    else:
        text = json.dumps({"organization_id": org, "since": since, "until": until,
                           "verification": result.as_dict(), "rows": rows}, indent=1)
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)
    raise typer.Exit(0 if result.ok else 1)


@vault_cli.command("bootstrap")
def vault_bootstrap(
    addr: str | None = typer.Option(None, "--addr", help="Vault/OpenBao URL (default OSI_VAULT_ADDR)"),
    token_file: Path | None = typer.Option(None, "--token-file", help="file holding a root/admin token "
                                           "(default: VAULT_TOKEN, BAO_TOKEN, then OSI_VAULT_TOKEN)"),
    write_dir: Path | None = typer.Option(None, "--write-dir", help="write <dir>/<role>/role_id and secret_id "
                                          "(mode 0600); without it the ids are printed"),
    policy_dir: Path | None = typer.Option(None, "--policy-dir", help="the HCL policies (default deploy/vault)"),
    token_ttl: str = typer.Option("1h", "--token-ttl"),
    token_max_ttl: str = typer.Option("24h", "--token-max-ttl"),
) -> None:
    """Set up an initialized, unsealed Vault/OpenBao: KV v2, transit and the payload key, the policies, the
    AppRoles osi-worker and osi-gateway with a new secret id each (idempotent; docs/deploy.md "Vault")."""
    s = get_settings()
    token = (token_file.read_text().strip() if token_file else None) or os.environ.get("VAULT_TOKEN") \
        or os.environ.get("BAO_TOKEN") or (s.vault_token.get_secret_value() if s.vault_token else None)
    if not token:
        raise typer.BadParameter("an admin token is needed: --token-file, VAULT_TOKEN or BAO_TOKEN")
    try:
        result = bootstrap(hvac.Client(url=addr or s.vault_addr, token=token, timeout=10), policy_dir=policy_dir,
                           write_dir=write_dir, kv_mount=s.vault_kv_mount, transit_mount=s.vault_transit_mount,
                           transit_key=s.vault_transit_key, token_ttl=token_ttl, token_max_ttl=token_max_ttl)
    except (HvacError, requests.RequestException, OSError, ValueError) as exc:
        console.print(f"[red]bootstrap failed: {type(exc).__name__}: {exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"enabled: {', '.join(result.enabled) or 'nothing new'}; policies: {', '.join(result.policies)}")
    for role, creds in result.roles.items():
        if write_dir is not None:
            console.print(f"{role}: role_id {creds.role_id}; role_id and secret_id written to {write_dir / role}")
        else:  # nowhere else to get them from: print once (secret ids are not shown again)
            console.print(f"{role}: role_id {creds.role_id} secret_id {creds.secret_id}")


@schema.command("export")
def schema_export(out: str = typer.Option("docs/schemas", "--out")) -> None:
    """Write a JSON Schema for every workflow input and result."""
    for path in export_schemas(out):
        console.print(str(path))


def diagnose_cmd(
    org: str = typer.Argument(..., help="organization id"),
    connection: str | None = typer.Argument(None, help="a connection name, or TYPE/name (default: all of them)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    run_test: bool = typer.Option(True, "--test/--no-test", help="make a live connection test"),
) -> None:
    """Why a connection is broken and how to fix it: connectivity, credentials and their expiry, scopes,
    breaker and limiter in the worker, the last day's failed calls and workflows (Web UI links), a fix."""
    settings = get_settings()

    async def go(rt: Any) -> list[Any]:
        try:
            temporal = await asyncio.wait_for(connect(settings), timeout=5)
        except Exception:  # the report says what it could not see
            temporal = None
        metrics = (f"http://{settings.host}:{settings.worker_metrics_port}/metrics"
                   if settings.worker_metrics_port else None)
        return await diagnose(rt, org, connection, temporal=temporal, metrics_url=metrics, run_test=run_test)

    reports = run_with_runtime(go)
    if not reports:
        raise fail(f"no connection {connection or ''} in organization {org!r}".replace("  ", " ")
                   + " — `osi connections list --org " + org + "` shows them")
    if as_json:
        console.print_json(data=[r.to_dict() for r in reports])
    else:
        for r in reports:
            mark = "[green]ok[/]" if r.ok else "[red]needs attention[/]"
            console.print(f"\n[bold]{r.integration_type}/{r.name}[/] ({r.status}, {r.health}) — {mark}")
            for c in r.checks:
                console.print(f"  {'✓' if c.ok else '✗'} {c.name}: ", end="")
                console.print(c.detail, markup=False, highlight=False)
            for w in r.failed_workflows:
                console.print(f"    {w['type']} {w['workflow_id']} {w['link']}", markup=False, highlight=False)
            if r.failed_workflows_link:
                console.print(f"  failed workflows (24 h) in the Web UI: {r.failed_workflows_link}", markup=False,
                              highlight=False)
            for fix in r.fixes:
                console.print(f"  → {fix}", markup=False, highlight=False)
    raise typer.Exit(0 if all(r.ok for r in reports) else 1)


@processes.command("worker")
def worker_cmd() -> None:
    """Run the Temporal worker (same as `python -m worker`)."""
    main.main()


@processes.command("gateway")
def gateway_cmd() -> None:
    """Run the HTTP gateway."""
    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    uvicorn.run(create_gateway(s), host=s.host, port=s.gateway_port, log_config=None)


@processes.command("sandbox")
def sandbox_cmd() -> None:
    """Serve the provider fakes."""
    s = get_settings()
    uvicorn.run(create_sandbox(), host=s.host, port=s.sandbox_port, log_level="warning")


@processes.command("dev")
def dev_cmd() -> None:
    """Start the whole local stack, seed the demo organization, run the demos, keep it up."""
    dev.main()


app = build_cli(default_registry())
