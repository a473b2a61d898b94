"""`osi whatsapp`: phone number status and registration, templates, opt-ins, cost reports, media, Meta apps
(one webhook URL per app) and the conversation-id key."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from activities.whatsapp import apps, conversation_ids
from activities.whatsapp.activities import WhatsAppActivities, register, store_pin
from activities.whatsapp.cost import current_rates, parse_rate_file
from activities.whatsapp.models import (
    DownloadMediaInput,
    MediaRefInput,
    PhoneNumberInput,
    RequestCodeInput,
    TemplatesInput,
    UploadMediaInput,
    VerifyCodeInput,
)
from activities.whatsapp.phone import normalize_e164
from activities.whatsapp.store import WhatsAppStore
from core.cli import console, errors, fail, run_classified
from core.errors import PermanentError
from core.links import workflow_link
from core.settings import get_settings
from core.temporal import connect

T = TypeVar("T")
app = typer.Typer(name="whatsapp", help="WhatsApp Business: send, bulk sends, phone number, templates, opt-ins, cost",
                  no_args_is_help=True)
phone = typer.Typer(help="The connection's business phone number", no_args_is_help=True)
templates = typer.Typer(help="Message templates of the connection's WABA", no_args_is_help=True)
optin = typer.Typer(help="Opt-in registry per (organization, number, customer)", no_args_is_help=True)
cost = typer.Typer(help="Delivered-message cost: reports and the rate table", no_args_is_help=True)
media = typer.Typer(help="Media: upload from a URL, look up, delete", no_args_is_help=True)
app.add_typer(phone, name="phone")
app.add_typer(templates, name="templates")
app.add_typer(optin, name="optin")
app.add_typer(cost, name="cost")
app.add_typer(media, name="media")

ORG = typer.Option(..., "--org", help="OpenSyte organization id")
NAME = typer.Option("default", "--name", help="connection name")
JSON_OUT = typer.Option(False, "--json", help="machine-readable output")


_run = run_classified


def _acts(rt: Any) -> Any:
    return WhatsAppActivities(rt)


async def _phone_number_id(rt: Any, org: str, name: str) -> str:
    conn = await rt.store.run(rt.store.find_connection, org, "WHATSAPP_BUSINESS", name)
    return str(conn.settings.get("phone_number_id"))


# ---- phone ------------------------------------------------------------------------------------
@phone.command("status")
def phone_status(org: str = ORG, name: str = NAME) -> None:
    """Verified name, code verification, quality rating, messaging limit, name status."""
    res = _run(lambda rt: _acts(rt).get_phone_number(PhoneNumberInput(organization_id=org, connection=name)))
    console.print_json(data=res.model_dump(exclude_none=True))


@phone.command("request-code")
def phone_request_code(org: str = ORG, name: str = NAME,
                       method: str = typer.Option("SMS", "--method", help="SMS or VOICE"),
                       language: str = typer.Option("en_US", "--language")) -> None:
    """Ask Meta to send a 6-digit verification code to the number."""
    if method.upper() not in ("SMS", "VOICE"):
        raise typer.BadParameter("--method must be SMS or VOICE")
    res = _run(lambda rt: _acts(rt).request_code(RequestCodeInput(
        organization_id=org, connection=name, code_method=method.upper(), language=language)))
    console.print_json(data=res.model_dump())


@phone.command("verify-code")
def phone_verify_code(org: str = ORG, name: str = NAME,
                      code: str = typer.Option(None, "--code", help="prompted when omitted")) -> None:
    """Verify the number with the code Meta sent."""
    code = code or typer.prompt("verification code")
    res = _run(lambda rt: _acts(rt).verify_code(VerifyCodeInput(organization_id=org, connection=name, code=code)))
    console.print_json(data=res.model_dump())


@phone.command("register")
def phone_register(org: str = ORG, name: str = NAME,
                   pin_stdin: bool = typer.Option(False, "--pin-stdin", help="read the PIN from stdin")) -> None:
    """Register the number for Cloud API; the 6-digit two-step PIN is kept in Vault, never printed."""
    pin = sys.stdin.readline().strip() if pin_stdin else typer.prompt("6-digit PIN", hide_input=True)

    async def go(rt: Any) -> Any:
        await store_pin(rt, org, name, pin)
        return await register(rt, org, name)

    try:
        res = _run(go)
    except Exception as exc:  # PermanentError from store_pin: bad PIN format
        if getattr(exc, "code", None) == "invalid_pin":
            raise typer.BadParameter(str(exc)) from None
        raise
    console.print_json(data=res.model_dump())


@phone.command("deregister")
def phone_deregister(org: str = ORG, name: str = NAME, yes: bool = typer.Option(False, "--yes")) -> None:
    """Deregister the number (it stops sending and receiving through Cloud API)."""
    if not yes:
        typer.confirm(f"deregister the WhatsApp number of {org}/{name}?", abort=True)
    res = _run(lambda rt: _acts(rt).deregister(PhoneNumberInput(organization_id=org, connection=name)))
    console.print_json(data=res.model_dump())


# ---- templates --------------------------------------------------------------------------------
@templates.command("list")
def templates_list(org: str = ORG, name: str = NAME, refresh: bool = typer.Option(False, "--refresh"),
                   as_json: bool = JSON_OUT) -> None:
    """Every template with its status, category and parameter format."""
    res = _run(lambda rt: _acts(rt).list_templates(TemplatesInput(organization_id=org, connection=name,
                                                                  refresh=refresh)))
    items = sorted(res.templates, key=lambda t: (t.name, t.language))
    if as_json:
        console.print_json(data=[t.model_dump() for t in items])
        return
    table = Table("name", "language", "status", "category", "parameters")
    for t in items:
        table.add_row(t.name, t.language, t.status, str(t.category or ""), str(t.parameter_format or "POSITIONAL"))
    console.print(table)


# ---- opt-ins ----------------------------------------------------------------------------------
def _wa_ids(numbers: list[str]) -> list[str]:
    try:
        return [normalize_e164(n, "--phone") for n in numbers]
    except PermanentError as exc:
        raise typer.BadParameter(exc.message) from None


@optin.command("add")
def optin_add(org: str = ORG, name: str = NAME,
              phones: list[str] = typer.Option(..., "--phone", help="customer number in E.164 (repeatable)"),
              source: str = typer.Option(..., "--source", help="where the consent was given, e.g. 'checkout form'"),
              ) -> None:
    """Record that customers opted in (source and time are kept)."""
    wa_ids = _wa_ids(phones)

    async def go(rt: Any) -> int:
        pid = await _phone_number_id(rt, org, name)
        n: int = await rt.store.run(WhatsAppStore(rt.store).opt_in, org, pid, wa_ids, source)
        await rt.store.run(rt.store.audit, org, "operator", "whatsapp.optin.add", "ok", target=",".join(wa_ids),
                           detail={"source": source})
        return n

    console.print(f"opted in {_run(go)} customer(s)")


@optin.command("revoke")
def optin_revoke(org: str = ORG, name: str = NAME,
                 phones: list[str] = typer.Option(..., "--phone", help="customer number in E.164 (repeatable)"),
                 source: str = typer.Option("operator", "--source"),
                 marketing_only: bool = typer.Option(False, "--marketing-only", help="stop marketing only")) -> None:
    """Opt customers out (of everything, or of marketing only)."""
    wa_ids = _wa_ids(phones)

    async def go(rt: Any) -> None:
        pid = await _phone_number_id(rt, org, name)
        for wa_id in wa_ids:
            await rt.store.run(WhatsAppStore(rt.store).opt_out, org, pid, wa_id, source,
                               marketing_only=marketing_only)
        await rt.store.run(rt.store.audit, org, "operator", "whatsapp.optin.revoke", "ok", target=",".join(wa_ids),
                           detail={"source": source, "marketing_only": marketing_only})

    _run(go)
    console.print(f"revoked {len(wa_ids)} customer(s){' (marketing only)' if marketing_only else ''}")


@optin.command("list")
def optin_list(org: str = ORG, name: str = NAME,
               status: str = typer.Option(None, "--status", help="opted_in | opted_out"),
               as_json: bool = JSON_OUT) -> None:
    """Customers of the number with their opt-in state and window."""
    async def go(rt: Any) -> Any:
        pid = await _phone_number_id(rt, org, name)
        return await rt.store.run(WhatsAppStore(rt.store).list_contacts, org, pid, status)

    rows = [c.model_dump(mode="json", exclude={"id"}) for c in _run(go)]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("customer", "opted in", "source", "opted out", "marketing off", "last inbound")
    for c in rows:
        table.add_row(c["wa_id"], str(c["opted_in"]), str(c["opt_in_source"] or ""),
                      str(c["opted_out"]) + (f" ({c['opt_out_source']})" if c["opt_out_source"] else ""),
                      str(c["marketing_opted_out"]), str(c["last_inbound_at"] or ""))
    console.print(table)


# ---- cost -------------------------------------------------------------------------------------
@cost.command("report")
def cost_report(org: str = ORG, since: str = typer.Option(None, "--since", help="YYYY-MM-DD"),
                until: str = typer.Option(None, "--until", help="YYYY-MM-DD"),
                connection: str = typer.Option(None, "--name", help="only this connection"),
                as_json: bool = JSON_OUT) -> None:
    """Delivered messages and their cost per connection, category and day."""
    async def go(rt: Any) -> Any:
        conn_id = None
        if connection:
            conn_id = (await rt.store.run(rt.store.find_connection, org, "WHATSAPP_BUSINESS", connection)).id
        return await rt.store.run(WhatsAppStore(rt.store).cost_report, org, since, until, conn_id)

    rows = [r.model_dump(mode="json", exclude={"id"}) for r in _run(go)]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("day", "connection", "category", "delivered", "billable", "cost")
    totals: dict[str, float] = {}
    for r in rows:
        table.add_row(r["day"], r["connection_id"], r["category"], str(r["delivered"]), str(r["billable"]),
                      f"{r['cost_amount']:.4f} {r['currency']}")
        totals[r["currency"]] = totals.get(r["currency"], 0.0) + r["cost_amount"]
    console.print(table)
    console.print("total: " + (", ".join(f"{v:.4f} {k}" for k, v in totals.items()) or "0"))


@cost.command("rates-load")
def cost_rates_load(path: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                help="JSON {rates:[...]} or CSV country_code,category,price,currency"),
                    source: str = typer.Option(None, "--source", help="e.g. 'Meta rate card 2026-07'")) -> None:
    """Replace the rate table (per country calling code and category) with the operator's card."""
    try:
        rows = parse_rate_file(path)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(str(exc)) from None

    async def go(rt: Any) -> int:
        n: int = await rt.store.run(WhatsAppStore(rt.store).replace_rates, rows, source or path.name)
        await rt.store.run(rt.store.audit, "*", "operator", "whatsapp.rates.load", "ok", target=path.name,
                           detail={"rows": n})
        return n

    console.print(f"loaded {_run(go)} rates from {path.name}")


@cost.command("rates-show")
def cost_rates_show(as_json: bool = JSON_OUT) -> None:
    """The rate table in use (the shipped default until an operator loads one)."""
    rates = _run(current_rates)
    rows: list[dict[str, Any]] = [{"country_code": cc, "category": cat, "price": p, "currency": cur}
            for (cc, cat), (p, cur) in sorted(rates.items())]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("country code", "category", "price", "currency")
    for r in rows:
        table.add_row(r["country_code"], r["category"], str(r["price"]), r["currency"])
    console.print(table)


# ---- media ------------------------------------------------------------------------------------
@media.command("upload")
def media_upload(org: str = ORG, name: str = NAME,
                 url: str = typer.Argument(..., help="http(s) URL of the file (public host)"),
                 mime_type: str | None = typer.Option(None, "--mime-type", help="default: the source's type"),
                 filename: str | None = typer.Option(None, "--filename")) -> None:
    """Upload a file for sending by id (Meta keeps it 30 days); type and size are checked first."""
    res = _run(lambda rt: _acts(rt).upload_media(UploadMediaInput(
        organization_id=org, connection=name, source_url=url, mime_type=mime_type, filename=filename)))
    console.print_json(data=res.model_dump())


@media.command("info")
def media_info(media_id: str = typer.Argument(...), org: str = ORG, name: str = NAME) -> None:
    """Type, size, SHA-256 and the short-lived download URL (it needs the connection's token)."""
    res = _run(lambda rt: _acts(rt).media_info(MediaRefInput(organization_id=org, connection=name,
                                                             media_id=media_id)))
    console.print_json(data=res.model_dump())


@media.command("delete")
def media_delete(media_id: str = typer.Argument(...), org: str = ORG, name: str = NAME) -> None:
    ok = _run(lambda rt: _acts(rt).delete_media(MediaRefInput(organization_id=org, connection=name,
                                                              media_id=media_id)))
    console.print_json(data={"ok": ok})


@media.command("download")
def media_download(media_id: str = typer.Argument(..., help="the media id of a customer's message"),
                   org: str = ORG, name: str = NAME,
                   out: Path = typer.Option(None, "--out", help="write the file here"),
                   upload_url: str | None = typer.Option(None, "--upload-url",
                                                         help="PUT the file there instead (e.g. a presigned URL)")
                   ) -> None:
    """Fetch media a customer sent: Meta's URL lookup, then the download with the connection's token."""
    res = _run(lambda rt: _acts(rt).download_media(DownloadMediaInput(
        organization_id=org, connection=name, media_id=media_id, upload_url=upload_url,
        max_inline_bytes=1536 * 1024)))
    if out is not None and res.content_base64:
        out.write_bytes(base64.b64decode(res.content_base64))
    console.print_json(data=res.model_dump(exclude={"content_base64"}))


# ---- Meta apps: one webhook callback URL per app ---------------------------------------------------
@app.command("app-set")
def app_set(app_id: str = typer.Argument(..., help="the Meta app id (digits)"),
            label: str = typer.Option("", "--label"),
            alert_org: str | None = typer.Option(None, "--org", help="organization whose administrators hear of "
                                                 "deliveries for numbers no connection owns (default: operator)")
            ) -> None:
    """Register a Meta app (secrets prompted, hidden, kept in Vault); point the app's webhook at
    /webhooks/whatsapp/app/APP_ID and give its connections the setting app_id=APP_ID."""
    secret = typer.prompt("app secret", hide_input=True)
    verify = typer.prompt("verify token", hide_input=True)
    row = _run(lambda rt: apps.set_app(rt, app_id, secret, verify, label=label, organization_id=alert_org))
    console.print(f"app {row.app_id} registered; Meta callback URL: <gateway>/webhooks/whatsapp/app/{row.app_id}")


@app.command("app-list")
def app_list(as_json: bool = JSON_OUT) -> None:
    """Registered Meta apps (their secrets stay in Vault)."""
    rows = [a.model_dump(mode="json") for a in _run(lambda rt: rt.store.run(WhatsAppStore(rt.store).apps))]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("app id", "label", "alerts to", "updated")
    for a in rows:
        table.add_row(a["app_id"], a["label"], a["organization_id"] or apps.OPERATOR_ORG, a["updated_at"])
    console.print(table)


@app.command("app-remove")
def app_remove(app_id: str = typer.Argument(...)) -> None:
    """Forget an app and delete its secrets (its deliveries are refused from then on)."""
    ok = _run(lambda rt: apps.remove_app(rt, app_id))
    console.print(f"removed app {app_id}" if ok else f"[yellow]no app {app_id}[/]")


@app.command("unrouted")
def unrouted(limit: int = typer.Option(20, "--limit"), as_json: bool = JSON_OUT) -> None:
    """Verified deliveries no connection could run (unknown number, another organization or app), kept raw."""
    rows = [u.model_dump(mode="json") for u in
            _run(lambda rt: rt.store.run(WhatsAppStore(rt.store).unrouted, limit))]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("received", "phone number id", "reason", "app", "via connection")
    for u in rows:
        table.add_row(u["received_at"], u["phone_number_id"], u["reason"], u["app_id"] or "",
                      u["via_connection_id"] or "")
    console.print(table)


@app.command("conversation-key")
def conversation_key() -> None:
    """Make the key that hashes customers out of conversation workflow ids, once per deployment (an operator
    token may create it; gateways and workers only read it)."""
    _run(lambda rt: conversation_ids.key(rt))
    console.print(f"conversation-id key present at {conversation_ids.VAULT_NAME} (osi/apps/)")


# ---- sending (through Temporal) ---------------------------------------------------------------
bulk = typer.Typer(help="Bulk template sends: start, watch with a progress bar, pause, resume, cancel",
                   no_args_is_help=True)
app.add_typer(bulk, name="bulk")
POLL_SECONDS = 0.5


def _progress_view(title: str) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console, transient=False)


async def _watch(handle: Any, title: str, total: int) -> Any:
    """Poll the workflow's `progress` query into a Rich progress bar until the workflow ends; its result.

    A workflow without the query (or one that has not answered yet) shows an indeterminate bar."""
    result_task = asyncio.ensure_future(handle.result())
    with _progress_view(title) as bar:
        task = bar.add_task(title, total=total or None, detail="")
        while not result_task.done():
            try:
                p = await handle.query("progress")
            except Exception:  # not queryable (yet): keep the bar indeterminate
                p = None
            if isinstance(p, dict):
                done = sum(int(p.get(k) or 0) for k in ("sent", "failed", "skipped", "cancelled"))
                detail = ", ".join(f"{p[k]} {k}" for k in ("sent", "failed", "held", "skipped") if p.get(k))
                bar.update(task, total=p.get("total") or total or None, completed=done,
                           detail=f"{detail} [{p.get('state', 'running')}]" if p.get("state") else detail)
            await asyncio.wait([result_task], timeout=POLL_SECONDS)
        if result_task.exception() is None:
            final = result_task.result()
            if isinstance(final, dict):
                done = sum(int(final.get(k) or 0) for k in ("sent", "failed", "skipped", "cancelled"))
                bar.update(task, total=final.get("total") or total or done or 1, completed=done or total or 1)
    return result_task.result()


def _recipients(values: list[str]) -> list[str]:
    try:
        return [normalize_e164(v, "--to") for v in values]
    except PermanentError as exc:
        raise typer.BadParameter(exc.message, param_hint="--to") from None


@app.command("send")
def send(org: str = ORG, name: str = NAME,
         to: list[str] = typer.Option(..., "--to", help="recipient in E.164 (repeatable)"),
         text: str | None = typer.Option(None, "--text", help="a free-form text message"),
         template: str | None = typer.Option(None, "--template", help="an approved template's name"),
         language: str = typer.Option("en_US", "--language", help="the template's language"),
         param: list[str] = typer.Option([], "--param", help="a template body parameter, in order (repeatable)"),
         wait: bool = typer.Option(True, "--wait/--no-wait", help="follow it with a progress bar until done"),
         as_json: bool = JSON_OUT) -> None:
    """Send a text or template message through SendWhatsAppMessage on Temporal (durable; held sends resume
    when a messaging-limit slot frees). Exit 0 when every recipient was sent or held, 1 otherwise."""
    if (text is None) == (template is None):
        raise typer.BadParameter("give --text or --template (one of them)", param_hint="--text/--template")
    numbers = _recipients(to)
    inp: dict[str, Any] = {"organization_id": org, "connection": name, "to": numbers}
    if text is not None:
        inp["text"] = text
    else:
        inp |= {"type": "template", "template": {"name": template, "language": language, "body": list(param)}}
    settings = get_settings()
    wf_id = f"cli-whatsapp-{uuid.uuid4().hex[:12]}"

    async def go() -> Any:
        client = await connect(settings)
        handle = await client.start_workflow("SendWhatsAppMessage", inp, id=wf_id, task_queue=settings.task_queue,
                                             static_summary=f"`osi whatsapp send`: {len(numbers)} recipient(s)")
        if not as_json:
            errors.print(f"started {wf_id}: {workflow_link(settings, wf_id)}", markup=False)
        if not wait:
            return None
        return await (handle.result() if as_json else _watch(handle, "sending", len(numbers)))

    res = asyncio.run(go())
    if res is None:
        console.print(wf_id, markup=False, highlight=False)
        return
    if as_json:
        console.print_json(data=res)
    else:
        table = Table("to", "status", "message id", "error")
        for r in res.get("results") or []:
            err = r.get("error") or {}
            table.add_row(r.get("to", ""), r.get("status", ""), r.get("message_id") or "",
                          f"{err.get('code') or ''} {err.get('message') or ''}".strip())
        console.print(table)
    if res.get("failed"):
        raise fail(f"{res['failed']} of {len(res.get('results') or [])} recipients failed")


def _bulk_file(path: Path) -> list[dict[str, Any]]:
    """Recipients from JSON (a list of {to, body, header, buttons}) or CSV (a `to` column, then the body
    parameters in order, or named by their column header when it is not `p1`, `p2`…)."""
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, list):
                raise ValueError("the JSON file must hold a list of recipients")
            return [d if isinstance(d, dict) else {"to": str(d)} for d in data]
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="RECIPIENTS") from None
    out = []
    for i, row in enumerate(rows, start=2):
        to = (row.pop("to", None) or "").strip()
        if not to:
            raise typer.BadParameter(f"{path}:{i}: no `to` column value", param_hint="RECIPIENTS")
        values = {k: v for k, v in row.items() if k and v not in (None, "")}
        positional = all(re.fullmatch(r"p\d+", k) for k in values)
        out.append({"to": to, "body": [values[k] for k in sorted(values, key=lambda k: int(k[1:]))]
                    if positional else values})
    return out


@bulk.command("send")
def bulk_send(org: str = ORG, name: str = NAME,
              recipients: Path = typer.Argument(..., exists=True, dir_okay=False, help="a .csv or .json file"),
              template: str = typer.Option(..., "--template", help="an approved template's name"),
              language: str = typer.Option("en_US", "--language"),
              batch_size: int = typer.Option(100, "--batch-size"),
              concurrency: int = typer.Option(10, "--concurrency"),
              watch: bool = typer.Option(False, "--watch", help="follow it with a progress bar until done"),
              as_json: bool = JSON_OUT) -> None:
    """Start BulkSendWhatsAppTemplate; prints its workflow id (and, with --watch, its progress and outcome)."""
    people = _bulk_file(recipients)
    inp = {"organization_id": org, "connection": name, "template_name": template, "language": language,
           "recipients": people, "batch_size": batch_size, "concurrency": concurrency}
    settings = get_settings()
    wf_id = f"cli-bulk-{uuid.uuid4().hex[:12]}"

    async def go() -> Any:
        client = await connect(settings)
        handle = await client.start_workflow("BulkSendWhatsAppTemplate", inp, id=wf_id,
                                             task_queue=settings.task_queue,
                                             static_summary=f"`osi whatsapp bulk send`: template {template}, "
                                                            f"{len(people)} recipients")
        return await _watch(handle, f"bulk {template}", len(people)) if watch else None

    errors.print(f"started {wf_id} ({len(people)} recipients): {workflow_link(settings, wf_id)}", markup=False)
    res = asyncio.run(go())
    if res is None:
        console.print(wf_id, markup=False, highlight=False)
        return
    _bulk_summary(res, as_json)


def _bulk_summary(res: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(data=res)
    else:
        console.print(f"{res.get('state')}: {res.get('sent', 0)} sent, {res.get('failed', 0)} failed, "
                      f"{res.get('skipped', 0)} skipped, {res.get('cancelled', 0)} cancelled of {res.get('total')}"
                      + (f"; failures by code: {res['failed_by_error']}" if res.get("failed_by_error") else ""),
                      markup=False, highlight=False)
    if res.get("failed") and not res.get("sent"):
        raise fail("every recipient failed")


@bulk.command("watch")
def bulk_watch(workflow_id: str = typer.Argument(..., help="the bulk send's workflow id"),
               as_json: bool = JSON_OUT) -> None:
    """Follow a running bulk send with a progress bar until it ends (Ctrl-C stops watching, not the send)."""
    settings = get_settings()

    async def go() -> Any:
        client = await connect(settings)
        handle = client.get_workflow_handle(workflow_id)
        p = await handle.query("progress")
        return await _watch(handle, "bulk send", int(p.get("total") or 0))

    _bulk_summary(asyncio.run(go()), as_json)


def _bulk_signal(workflow_id: str, signal: str) -> None:
    settings = get_settings()

    async def go() -> None:
        client = await connect(settings)
        await client.get_workflow_handle(workflow_id).signal(signal)

    asyncio.run(go())
    console.print(f"{signal}: sent to {workflow_id}", markup=False, highlight=False)


@bulk.command("pause")
def bulk_pause(workflow_id: str = typer.Argument(...)) -> None:
    """Finish the batches in flight, start no new one until resumed."""
    _bulk_signal(workflow_id, "pause")


@bulk.command("resume")
def bulk_resume(workflow_id: str = typer.Argument(...)) -> None:
    _bulk_signal(workflow_id, "resume")


@bulk.command("cancel")
def bulk_cancel(workflow_id: str = typer.Argument(...)) -> None:
    """Finish the batches in flight and stop; the rest is counted as cancelled."""
    _bulk_signal(workflow_id, "cancel")
