"""Slack routes: OAuth v2 install and callback, Events API, interactivity and slash commands.

Every inbound request is verified on its raw bytes with the app's signing secret (from Vault) before
anything is parsed; a bad or stale signature gets 401 and touches nothing. Requests are acknowledged
well within Slack's 3 seconds: signals and workflow starts are quick RPCs, and anything slower
(the status report) answers later through the request's response_url.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from activities.slack import oauth, webhooks
from activities.slack import store as slack_store
from activities.slack.activities import SlackActivities
from activities.slack.models import (
    ApprovalContext,
    OpenViewInput,
    SlackCommandInput,
    SlackInteraction,
    SlackStatusReport,
)
from activities.slack.provider import PROVIDER
from activities.slack.settings import SlackSettings
from activities.slack.spec import SPEC
from activities.slack.webhooks import COMMENT_ACTION, COMMENT_BLOCK, COMMENT_CALLBACK, SlackRequest
from core.errors import ConfigurationError, IntegrationError
from core.inbox import is_replay, refuse
from core.links import LINK_TTL_SECONDS, connect_link, link_requester
from core.settings import Settings

log = logging.getLogger("osi.gateway.slack")

SIGNAL = "slack_interaction"
ACK_BUDGET_SECONDS = 2.0  # Slack gives 3 s; keep a margin for the network
INSTALL_PATH = SPEC.install_path or "/slack/install"
HELP = ("Usage: `/opensyte status` shows this workspace's OpenSyte connections and their health.")


# ---- install links ------------------------------------------------------------------------
def install_link(settings: Settings, organization_id: str, name: str, ttl_seconds: int = LINK_TTL_SECONDS,
                 requested_by: str = "system") -> str:
    """The URL an administrator opens to install (or re-install) the app for a connection."""
    assert SPEC.install_path is not None
    return connect_link(settings, SPEC.install_path, organization_id, name, ttl_seconds, requested_by=requested_by)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                        f"<p>{html.escape(body)}</p>", status_code=status)


# ---- helpers ----------------------------------------------------------------------------------
async def _signing_secret(request: Request) -> str:
    try:
        app = await request.app.state.rt.vault.read_app(oauth.APP)
    except Exception as exc:  # no app configured (CredentialsMissing) or Vault down: cannot verify
        log.warning("slack: no signing secret available (%s)", type(exc).__name__)
        return ""
    return app.signing_secret.get_secret_value() if app.signing_secret else ""


async def _verified(request: Request) -> tuple[bytes, SlackRequest] | Response:
    """Raw bytes verified first; then parsed. 401 for anything not signed by Slack right now; a signed body we
    cannot parse is kept for replay and answered 400."""
    raw = await request.body()
    if not is_replay(request):
        secret = await _signing_secret(request)
        if not webhooks.verify_request(secret, raw, request.headers):
            # A rotated signing secret (`osi slack app-set` on another process) is re-read once, rate limited.
            vault = request.app.state.rt.vault
            if not await vault.recheck(vault.app_path(oauth.APP)) or not webhooks.verify_request(
                    await _signing_secret(request), raw, request.headers):
                return JSONResponse({"error": "invalid request"}, status_code=401)
    try:
        parsed = webhooks.parse(raw)
    except webhooks.MalformedRequest as exc:
        return await refuse(request.app.state.rt, "slack", request, raw, f"malformed request: {exc}")
    return raw, parsed


async def _first_time(request: Request, req: SlackRequest) -> bool:
    """Not handled yet (the key is recorded by `_handled`, only once processing succeeded, so a retry of a
    delivery that failed half-way is processed again instead of being swallowed as a duplicate)."""
    rt = request.app.state.rt
    seen = await rt.store.run(slack_store.seen_delivery, rt.store, req.dedupe_key)
    if seen:
        log.info("slack: duplicate delivery %s (retry %s, reason %s)", req.kind,
                 request.headers.get(webhooks.RETRY_NUM_HEADER), request.headers.get(webhooks.RETRY_REASON_HEADER))
    return not seen


async def _handled(request: Request, req: SlackRequest) -> None:
    rt = request.app.state.rt
    await rt.store.run(slack_store.first_delivery, rt.store, req.dedupe_key, req.kind)


def _guarded(handler: Any) -> Any:
    """A verified request whose processing fails unexpectedly is kept for replay and answered 4xx, not 500."""
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            log.exception("slack: processing %s failed", request.url.path)
            raw = await request.body()
            return await refuse(request.app.state.rt, "slack", request, raw,
                                f"could not process: {type(exc).__name__}", 422)
    run.__name__ = handler.__name__
    return run


def _spawn(request: Request, coro: Any) -> None:
    tasks: set[asyncio.Task[Any]] = getattr(request.app.state, "slack_tasks", None) or set()
    request.app.state.slack_tasks = tasks
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _respond(request: Request, response_url: str | None, text: str, **extra: Any) -> None:
    """Answer through response_url (ephemeral unless told otherwise); failures are logged only."""
    if not response_url:
        return
    try:
        await request.app.state.rt.http.post(response_url, json={"response_type": "ephemeral", "text": text,
                                                                  **extra})
    except Exception as exc:
        log.warning("slack: response_url post failed: %s", type(exc).__name__)


async def _signal(temporal: Client, workflow_id: str, interaction: SlackInteraction) -> str | None:
    """Signal the workflow; None on success, else why not (closed, unknown, slow)."""
    try:
        await asyncio.wait_for(temporal.get_workflow_handle(workflow_id).signal(SIGNAL, interaction),
                               timeout=ACK_BUDGET_SECONDS)
    except RPCError as exc:
        return "closed" if "completed" in str(exc).lower() or "not found" in str(exc).lower() else str(exc)
    except TimeoutError:
        return "timeout"
    return None


async def _context(temporal: Client, workflow_id: str, user_id: str) -> ApprovalContext | None:
    try:
        return await asyncio.wait_for(
            temporal.get_workflow_handle(workflow_id).query("approval_context", user_id,
                                                            result_type=ApprovalContext),
            timeout=1.0)
    except (RPCError, TimeoutError, WorkflowFailureError) as exc:
        log.info("slack: approval_context of %s unavailable: %s", workflow_id, type(exc).__name__)
        return None
    except Exception as exc:  # a workflow without that query answers with a query failure
        log.info("slack: approval_context of %s failed: %s", workflow_id, type(exc).__name__)
        return None


def comment_view(workflow_id: str, decision: str, channel: str | None, ts: str | None) -> dict[str, Any]:
    verb = "Approve" if decision == "approve" else "Reject"
    return {
        "type": "modal", "callback_id": COMMENT_CALLBACK,
        "title": {"type": "plain_text", "text": verb},
        "submit": {"type": "plain_text", "text": verb},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"wf": workflow_id, "decision": decision, "channel": channel, "ts": ts}),
        "blocks": [{"type": "input", "block_id": COMMENT_BLOCK, "optional": True,
                    "label": {"type": "plain_text", "text": "Comment"},
                    "element": {"type": "plain_text_input", "action_id": COMMENT_ACTION, "multiline": True,
                                "max_length": webhooks.COMMENT_MAX}}],
    }


async def _open_comment_modal(request: Request, ctx: ApprovalContext, workflow_id: str,
                              interaction: SlackInteraction, trigger_id: str) -> bool:
    try:
        await SlackActivities(request.app.state.rt).open_view_now(OpenViewInput(
            organization_id=ctx.organization_id, connection=ctx.connection, trigger_id=trigger_id,
            view=comment_view(workflow_id, interaction.decision or "approve", interaction.channel_id,
                              interaction.message_ts)), actor=f"slack:{interaction.user_id}")
    except Exception as exc:  # ApplicationError from the pipeline, or the trigger already expired
        log.warning("slack: views.open for %s failed: %s", workflow_id, exc)
        return False
    return True


async def _mark_uninstalled(request: Request, team_id: str, why: str) -> int:
    """tokens_revoked / app_uninstalled: every connection of the workspace needs re-authentication."""
    rt = request.app.state.rt
    settings: Settings = request.app.state.settings
    conns = await rt.store.run(rt.store.find_connections_by_setting, SPEC.integration_type, "team_id", team_id)
    for conn in conns:
        err = ConfigurationError(f"Slack reported {why} for workspace {team_id}", code=why, provider="slack",
                                 details={"reauth": True})
        await rt.mark_unhealthy(conn, err, reauth=True,
                                reauth_url=install_link(settings, conn.organization_id, conn.name))
    return len(conns)


# ---- routes --------------------------------------------------------------------------------
def router() -> APIRouter:
    r = APIRouter()

    async def install(request: Request, organization_id: str, name: str = "default",
                      auto_join: bool | None = None, team: str | None = None) -> Response:
        rt = request.app.state.rt
        try:
            rt.vault.connection_path(organization_id, SPEC.integration_type, name)
        except ValueError as exc:
            return _page("Invalid install link", str(exc), 400)
        requester = link_requester(request.app.state.settings, INSTALL_PATH, organization_id, name,
                                   request.query_params, request.headers.get("authorization"))
        if requester is None:
            return _page("Not authorized", "This install link is not signed or has expired; ask an "
                         "administrator for a new one (osi slack install-link).", 401)
        try:
            app = await oauth.app_secrets(rt)
        except IntegrationError as exc:
            return _page("Slack app not configured", exc.message, 503)
        store = oauth.StateStore(rt.store, rt.section(SlackSettings).state_ttl_seconds)
        state = await rt.store.run(store.issue, organization_id=organization_id, name=name, auto_join=auto_join,
                                   requested_by=requester)
        if team is not None and not team.isalnum():
            return _page("Invalid install link", f"team {team!r} is not a Slack team id", 400)
        return RedirectResponse(oauth.authorize_url(request.app.state.settings, app.client_id, state, team),
                                status_code=302)

    r.add_api_route(INSTALL_PATH, install, methods=["GET"])

    @r.get(oauth.CALLBACK_PATH)
    async def callback(request: Request, state: str = "", code: str | None = None,
                       error: str | None = None) -> Response:
        rt = request.app.state.rt
        store = oauth.StateStore(rt.store, rt.section(SlackSettings).state_ttl_seconds)
        pending = await rt.store.run(store.consume_install, state)
        if pending is None:
            return _page("Install link expired", "The install state is unknown, used or expired: start the "
                         "installation again.", 400)
        if error or not code:
            return _page("Installation cancelled", f"Slack answered: {error or 'no code'}.", 400)
        try:
            conn = await oauth.install(rt, PROVIDER, pending.organization_id, pending.connection_name, code,
                                       auto_join=pending.auto_join, actor="oauth:slack")
        except IntegrationError as exc:
            await rt.store.run(rt.store.audit, pending.organization_id, "oauth:slack", "slack.install",
                               exc.error_class.value, target=pending.connection_name,
                               detail={**exc.to_dict(), "requested_by": pending.requested_by})
            return _page("Installation failed", f"{exc.message} ({exc.code})",
                         502 if exc.error_class.value == "TemporaryError" else 400)
        await rt.store.run(rt.store.audit, pending.organization_id, "oauth:slack", "slack.install", "ok",
                           connection_id=conn.id, target=pending.connection_name,
                           detail={"requested_by": pending.requested_by, "team_id": conn.settings.get("team_id")})
        team = conn.settings.get("team_name") or conn.settings.get("team_id")
        return _page("Slack connected", f"Workspace {team} is connected as {conn.name!r} for organization "
                     f"{conn.organization_id}. You can close this window.")

    @r.post("/slack/events")
    @_guarded
    async def events(request: Request) -> Response:
        checked = await _verified(request)
        if isinstance(checked, Response):
            return checked
        _, req = checked
        if req.kind == "url_verification":
            return JSONResponse({"challenge": req.challenge})
        if not await _first_time(request, req):
            return JSONResponse({"ok": True, "duplicate": True})
        etype = req.event.get("type")
        if etype in ("tokens_revoked", "app_uninstalled") and req.team_id:
            await _mark_uninstalled(request, req.team_id, str(etype))
        else:
            log.info("slack event %s ignored", etype)
        await _handled(request, req)
        return JSONResponse({"ok": True})

    @r.post("/slack/interactivity")
    @_guarded
    async def interactivity(request: Request) -> Response:
        checked = await _verified(request)
        if isinstance(checked, Response):
            return checked
        _, req = checked
        if not await _first_time(request, req):
            return Response(status_code=200)
        temporal: Client = request.app.state.temporal
        response_url = req.payload.get("response_url")
        routed = webhooks.interactions(req)
        if not routed and req.kind == "message_action":
            _spawn(request, _respond(request, response_url, "This message is not an OpenSyte request."))
        for workflow_id, interaction in routed:
            if req.kind == "block_actions" and interaction.decision and req.payload.get("trigger_id"):
                ctx = await _context(temporal, workflow_id, interaction.user_id)
                if ctx is not None and ctx.open and ctx.allowed and ctx.allow_comment:
                    if not await _open_comment_modal(request, ctx, workflow_id, interaction,
                                                     str(req.payload["trigger_id"])):
                        _spawn(request, _respond(request, response_url,
                                                 "Could not open the comment form; please click again."))
                    continue
            why = await _signal(temporal, workflow_id, interaction)
            if why is not None:
                log.info("slack: interaction for %s not delivered: %s", workflow_id, why)
                _spawn(request, _respond(request, response_url, "This request is no longer open."
                                         if why == "closed" else "Could not record that; please try again."))
        await _handled(request, req)
        # view_submission: an empty 200 closes the modal.
        return Response(status_code=200)

    @r.post("/slack/commands")
    @_guarded
    async def commands(request: Request) -> Response:
        checked = await _verified(request)
        if isinstance(checked, Response):
            return checked
        _, req = checked
        if not await _first_time(request, req):
            return Response(status_code=200)
        form = req.payload
        await _handled(request, req)  # a slash command is answered once, whatever follows
        words = str(form.get("text") or "").split()
        if not words or words[0].lower() != "status":
            return JSONResponse({"response_type": "ephemeral", "text": HELP})
        inp = SlackCommandInput(team_id=str(form.get("team_id") or ""), user_id=str(form.get("user_id") or ""),
                                channel_id=form.get("channel_id"), command=str(form.get("command") or ""),
                                text=str(form.get("text") or ""))
        temporal: Client = request.app.state.temporal
        settings: Settings = request.app.state.settings
        wf_id = f"slack-command-{inp.team_id}-{form.get('trigger_id') or int(time.time() * 1000)}"
        try:
            handle = await asyncio.wait_for(temporal.start_workflow(
                "SlackStatusCommand", inp, id=wf_id, task_queue=settings.task_queue, result_type=SlackStatusReport),
                timeout=ACK_BUDGET_SECONDS)
        except (RPCError, TimeoutError) as exc:
            log.warning("slack: could not start %s: %s", wf_id, type(exc).__name__)
            return JSONResponse({"response_type": "ephemeral",
                                 "text": "OpenSyte cannot answer right now; please try again in a minute."})

        async def reply() -> None:
            try:
                report = await handle.result()
                await _respond(request, form.get("response_url"), report.text)
            except Exception as exc:
                log.warning("slack: status command %s failed: %s", wf_id, type(exc).__name__)
                await _respond(request, form.get("response_url"), "Sorry, the status check failed.")

        _spawn(request, reply())
        return JSONResponse({"response_type": "ephemeral", "text": "Checking OpenSyte status…"})

    return r


__all__ = ["COMMENT_CALLBACK", "install_link", "router"]
