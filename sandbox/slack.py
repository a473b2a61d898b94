"""Slack Web API fake: real error strings (HTTP 200 + ok:false), 429 + Retry-After, per-channel 1 msg/s,
method tiers, scopes per token, rotating tokens, and signed interactivity sent to the gateway.

The fake keeps its own copy of Slack's facts (tiers, scopes, limits) on purpose: it plays the
provider, so a mistake in our plugin's spec shows up as a disagreement instead of being mirrored.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from slack_sdk.signature import SignatureVerifier

from sandbox import slack_history
from sandbox.limits import SlidingWindow
from sandbox.state import SandboxState

# method: (tier, scopes any-of by conversation type or plain, accepts JSON bodies)
TIERS_PER_MINUTE = {"tier1": 1, "tier2": 20, "tier3": 50, "tier4": 100}
METHODS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "auth.test": ("special", (), True),
    "auth.revoke": ("tier3", (), False),
    "chat.postMessage": ("special", ("chat:write",), True),
    "chat.update": ("tier3", ("chat:write",), True),
    "chat.postEphemeral": ("tier4", ("chat:write",), True),
    "conversations.history": ("tier3", (), True),  # scope depends on the conversation type
    "conversations.info": ("tier3", (), False),  # scope depends on the conversation type
    "conversations.members": ("tier4", (), False),
    "conversations.join": ("tier3", ("channels:join",), True),
    "users.lookupByEmail": ("tier3", ("users:read.email",), False),
    "views.open": ("tier4", (), True),
}
KNOWN_BLOCKS = {"section", "divider", "image", "actions", "context", "input", "file", "header", "video",
                "rich_text", "markdown", "call", "table"}
BLOCK_KEYS: dict[str, set[str]] = {
    "section": {"type", "block_id", "text", "fields", "accessory", "expand"},
    "divider": {"type", "block_id"},
    "image": {"type", "block_id", "image_url", "alt_text", "title", "slack_file"},
    "actions": {"type", "block_id", "elements"},
    "context": {"type", "block_id", "elements"},
    "input": {"type", "block_id", "label", "element", "dispatch_action", "hint", "optional"},
    "header": {"type", "block_id", "text"},
}
TRIGGER_TTL = 3.0
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60


def _id(prefix: str, n: int = 10) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def ok(**data: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **data})


def fail(error: str, status: int = 200, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Slack's method errors: HTTP 200 with ok:false (429 only for `ratelimited`)."""
    return JSONResponse({"ok": False, "error": error, **extra}, status_code=status, headers=headers)


def ratelimited(retry_after: float) -> JSONResponse:
    return fail("ratelimited", status=429, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})


# ---- state ---------------------------------------------------------------------------------
class AppConfig(BaseModel):
    """The Slack app as configured at api.slack.com: credentials, token rotation, request URLs."""

    client_id: str
    client_secret: str
    signing_secret: str
    app_id: str = Field(default_factory=lambda: _id("A"))
    token_rotation: bool = True
    token_lifetime: int = 43_200
    interactivity_url: str | None = None
    commands_url: str | None = None
    events_url: str | None = None
    install_team: str | None = None
    deny: bool = False
    # Metadata event types declared in the app manifest: their event_payload is shown without
    # include_all_metadata (undeclared ones show only event_type).
    metadata_event_types: list[str] = Field(default_factory=list)


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    is_im: bool = False
    user: str | None = None  # the person of a DM
    members: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    def public_dict(self, viewer: str) -> dict[str, Any]:
        if self.is_im:
            return {"id": self.id, "is_im": True, "user": self.user, "is_member": True, "is_private": True,
                    "is_archived": False, "created": self.created}
        return {"id": self.id, "name": self.name, "is_channel": True, "is_group": False, "is_im": False,
                "is_mpim": False, "is_private": self.is_private, "is_archived": self.is_archived,
                "is_general": self.name == "general", "is_member": viewer in self.members,
                "created": self.created, "num_members": len(self.members)}


@dataclass
class User:
    id: str
    name: str
    email: str | None = None
    real_name: str | None = None
    is_bot: bool = False
    deleted: bool = False


@dataclass
class Workspace:
    team_id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    active: bool = True
    channels: dict[str, Channel] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    tier_overrides: dict[str, int] = field(default_factory=dict)


@dataclass
class Token:
    team_id: str
    scopes: set[str]
    client_id: str | None
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class Grant:
    """An authorization code or a refresh token (both one-shot)."""

    team_id: str
    client_id: str
    scopes: set[str]
    redirect_uri: str | None = None
    created: float = field(default_factory=time.time)
    used: bool = False
    installer: str | None = None


@dataclass
class SlackFakeState:
    apps: dict[str, AppConfig] = field(default_factory=dict)
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_urls: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    method_log: dict[str, SlidingWindow] = field(default_factory=lambda: defaultdict(SlidingWindow))
    post_log: dict[str, float] = field(default_factory=dict)
    # Per "team:channel", for benchmarks: posts admitted, 429s, first and last admitted arrival (sandbox clock).
    per_channel: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    ts_seq: int = 0


# ---- control inputs -------------------------------------------------------------------------
class WorkspaceIn(BaseModel):
    team_id: str | None = None
    name: str = "Sandbox Workspace"
    domain: str | None = None
    bot_user_id: str | None = None


class ChannelIn(BaseModel):
    name: str
    is_private: bool = False
    is_archived: bool = False
    members: list[str] = Field(default_factory=list)
    bot_member: bool = True
    id: str | None = None


class UserIn(BaseModel):
    name: str
    email: str | None = None
    real_name: str | None = None
    id: str | None = None


class TokenIn(BaseModel):
    team_id: str
    scopes: list[str]
    client_id: str | None = None
    rotation: bool = False
    expires_in: int | None = None


class SignedOptions(BaseModel):
    """How to deliver a request to the gateway: honest by default; replayed, forged or redelivered on demand."""

    timestamp_offset: float = 0.0
    forge: bool = False
    retry_num: int | None = None
    repeat: int = 1


class ClickIn(SignedOptions):
    team_id: str
    user_id: str
    channel_id: str
    message_ts: str
    action_id: str
    value: str | None = None


class SubmitViewIn(SignedOptions):
    view_id: str
    user_id: str
    values: dict[str, dict[str, str]] = Field(default_factory=dict)


class CommandIn(SignedOptions):
    team_id: str
    user_id: str
    channel_id: str
    command: str = "/opensyte"
    text: str = ""


class ShortcutIn(SignedOptions):
    team_id: str
    user_id: str
    channel_id: str
    message_ts: str
    callback_id: str = "osi_message_action"


class EventIn(SignedOptions):
    team_id: str
    event: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = None
    url_verification: bool = False


class SlackFake:
    """Routes mounted under /slack (Web API at /slack/api, OAuth, hooks) and /_sandbox/slack (control)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = SlackFakeState()
        self._http: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    # ---- helpers ---------------------------------------------------------------------------
    def next_ts(self) -> str:
        self.state.ts_seq += 1
        return f"{int(time.time())}.{self.state.ts_seq % 1_000_000:06d}"

    def app(self) -> AppConfig | None:
        return next(iter(self.state.apps.values()), None)

    def issue_token(self, team_id: str, scopes: set[str], client_id: str | None, rotation: bool,
                    lifetime: int = 43_200) -> dict[str, Any]:
        if rotation:
            access = f"xoxe.xoxb-1-{secrets.token_urlsafe(24)}"
            refresh = f"xoxe-1-{secrets.token_urlsafe(24)}"
            self.state.tokens[access] = Token(team_id, set(scopes), client_id, time.time() + lifetime)
            self.state.refresh_tokens[refresh] = Grant(team_id, client_id or "", set(scopes))
            return {"access_token": access, "refresh_token": refresh, "expires_in": lifetime}
        access = f"xoxb-{secrets.randbelow(10**11)}-{secrets.randbelow(10**11)}-{secrets.token_urlsafe(18)}"
        self.state.tokens[access] = Token(team_id, set(scopes), client_id)
        return {"access_token": access}

    def token_of(self, request: Request, args: dict[str, Any]) -> tuple[str | None, JSONResponse | Token]:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else str(args.get("token") or "")
        if not token:
            return None, fail("not_authed")
        tok = self.state.tokens.get(token)
        if tok is None:
            return token, fail("invalid_auth")
        if tok.revoked:
            return token, fail("token_revoked")
        ws = self.state.workspaces.get(tok.team_id)
        if ws is None or not ws.active:
            return token, fail("account_inactive")
        if tok.expires_at is not None and time.time() >= tok.expires_at:
            return token, fail("token_expired")
        return token, tok

    def missing_scope(self, tok: Token, needed: tuple[str, ...]) -> JSONResponse | None:
        if needed and not any(s in tok.scopes for s in needed):
            return fail("missing_scope", needed=",".join(needed), provided=",".join(sorted(tok.scopes)))
        return None

    def tier_limited(self, team_id: str, method: str, tier: str) -> JSONResponse | None:
        """Per-minute budget of a method per workspace, counted at the request's arrival at Slack."""
        ws = self.state.workspaces[team_id]
        limit = ws.tier_overrides.get(method) or ws.tier_overrides.get(tier) or TIERS_PER_MINUTE.get(tier)
        if limit is None:
            limit = ws.tier_overrides.get("special", 100)
        log = self.state.method_log[f"{team_id}:{method}"]
        at = self.sandbox.arrival()
        if not log.admit(at, limit, 60.0):
            self.state.stats["429_tier"] += 1
            return ratelimited(log.retry_after(at, 60.0))
        return None

    async def fault(self) -> JSONResponse | None:
        kind = await self.sandbox.fault_for("slack")
        cfg = self.sandbox.faults.get("slack")
        if kind == "outage":
            return fail("service_unavailable", status=503)
        if kind == "5xx":
            return fail("internal_error", status=cfg.error_status if cfg else 500)
        if kind == "429":
            self.state.stats["429_fault"] += 1
            return ratelimited(cfg.retry_after if cfg and cfg.retry_after is not None else 1)
        return None

    def resolve(self, ws: Workspace, ref: str | None, viewer: str) -> Channel | None:
        """A conversation by ID (or name, or a user ID for the app's DM); private ones only to members."""
        if not ref:
            return None
        ref = str(ref).strip()
        if ref[:1] in ("U", "W") and ref in ws.users:
            dm_id = "D" + ref[1:]
            if dm_id not in ws.channels:
                ws.channels[dm_id] = Channel(dm_id, ref.lower(), is_private=True, is_im=True, user=ref,
                                             members=[ref, viewer])
            return ws.channels[dm_id]
        ch = ws.channels.get(ref) or next((c for c in ws.channels.values()
                                           if not c.is_im and c.name == ref.lstrip("#")), None)
        if ch is None or (ch.is_private and not ch.is_im and viewer not in ch.members):
            return None
        return ch

    # ---- Block Kit (the subset of Slack's schema our messages use) ------------------------
    def block_errors(self, blocks: Any, limit: int = 50) -> tuple[str, list[str]] | None:
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return "invalid_blocks_format", []
        if not isinstance(blocks, list):
            return "invalid_blocks_format", []
        if len(blocks) > limit:
            return "invalid_blocks", [f"no more than {limit} items allowed [json-pointer:/blocks]"]
        errors: list[str] = []
        ids: set[str] = set()
        for i, b in enumerate(blocks):
            p = f"/blocks/{i}"
            if not isinstance(b, dict) or b.get("type") not in KNOWN_BLOCKS:
                errors.append(f"failed to match all allowed schemas [json-pointer:{p}]")
                continue
            extra = set(b) - BLOCK_KEYS.get(b["type"], set(b))
            errors += [f"invalid additional property: {k} [json-pointer:{p}]" for k in sorted(extra)]
            bid = b.get("block_id")
            if bid is not None:
                if len(str(bid)) > 255:
                    errors.append(f"must be less than 256 characters [json-pointer:{p}/block_id]")
                if bid in ids:
                    errors.append(f"duplicate block_id [json-pointer:{p}/block_id]")
                ids.add(bid)
            text = b.get("text")
            if b["type"] == "section":
                if text is None and not b.get("fields"):
                    errors.append(f"must provide text or fields [json-pointer:{p}]")
                if isinstance(text, dict) and len(str(text.get("text", ""))) > 3000:
                    errors.append(f"must be less than 3001 characters [json-pointer:{p}/text/text]")
                if len(b.get("fields") or []) > 10:
                    errors.append(f"must provide no more than 10 items [json-pointer:{p}/fields]")
            if b["type"] == "header" and isinstance(text, dict) and len(str(text.get("text", ""))) > 150:
                errors.append(f"must be less than 151 characters [json-pointer:{p}/text/text]")
            if text is not None and not (isinstance(text, dict) and text.get("type") in ("plain_text", "mrkdwn")):
                errors.append(f"failed to match all allowed schemas [json-pointer:{p}/text]")
            if b["type"] in ("actions", "context"):
                els = b.get("elements")
                cap = 25 if b["type"] == "actions" else 10
                if not isinstance(els, list) or not els:
                    errors.append(f"must provide at least 1 item [json-pointer:{p}/elements]")
                elif len(els) > cap:
                    errors.append(f"must provide no more than {cap} items [json-pointer:{p}/elements]")
                else:
                    for j, el in enumerate(els):
                        if el.get("type") == "button" and len(str((el.get("text") or {}).get("text", ""))) > 75:
                            errors.append(f"must be less than 76 characters [json-pointer:{p}/elements/{j}/text]")
        return ("invalid_blocks", errors) if errors else None

    # ---- Web API ----------------------------------------------------------------------------
    async def args_of(self, request: Request, json_ok: bool) -> tuple[dict[str, Any], str | None]:
        """Query, form, or (for methods that accept it) JSON arguments; plus a warning if any."""
        args: dict[str, Any] = dict(request.query_params)
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        warning = None
        if raw and "application/json" in ctype:
            if json_ok:
                try:
                    doc = json.loads(raw)
                except ValueError:
                    return {"__error__": "invalid_json"}, None
                if not isinstance(doc, dict):
                    return {"__error__": "json_not_object"}, None
                args.update(doc)
                if "charset" not in ctype:
                    warning = "missing_charset"
        elif raw:
            args.update({k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                                        keep_blank_values=True).items()})
        return args, warning

    def router(self) -> APIRouter:
        r = APIRouter()

        @r.api_route("/api/{method}", methods=["GET", "POST"])
        async def api(method: str, request: Request) -> Response:
            if method == "oauth.v2.access":
                return await self.oauth_access(request)
            spec = METHODS.get(method)
            if spec is None:
                return fail("unknown_method", status=404)
            if (resp := await self.fault()) is not None:
                return resp
            tier, scopes, json_ok = spec
            args, warning = await self.args_of(request, json_ok)
            if "__error__" in args:
                return fail(str(args["__error__"]))
            _token, tok = self.token_of(request, args)
            if isinstance(tok, JSONResponse):
                return tok
            if (resp := self.missing_scope(tok, scopes)) is not None:
                return resp
            ws = self.state.workspaces[tok.team_id]
            if method != "chat.postMessage" and (resp := self.tier_limited(ws.team_id, method, tier)) is not None:
                return resp
            handler = getattr(self, "m_" + method.replace(".", "_"))
            resp = await handler(ws, tok, args)
            if warning and resp.status_code == 200:
                doc = json.loads(bytes(resp.body))
                if doc.get("ok"):
                    # Slack lists several warnings comma-separated in `warning`, one by one in the metadata.
                    doc["warning"] = ",".join(w for w in (doc.get("warning"), warning) if w)
                    doc.setdefault("response_metadata", {}).setdefault("warnings", []).append(warning)
                    return JSONResponse(doc)
            return resp

        @r.get("/oauth/v2/authorize")
        async def authorize(request: Request) -> Response:
            return self.authorize(request)

        @r.post("/hooks/{kind}/{team}/{hook_id}/{secret}")
        async def hook(kind: str, team: str, hook_id: str, secret: str, request: Request) -> Response:
            return await self.response_url(hook_id, secret, request)

        return r

    # ---- OAuth --------------------------------------------------------------------------
    def authorize(self, request: Request) -> Response:
        q = request.query_params
        app = self.state.apps.get(q.get("client_id", ""))
        if app is None:
            return HTMLResponse("<h1>invalid_client_id</h1>", status_code=400)
        redirect = q.get("redirect_uri")
        state = q.get("state", "")
        if not redirect:
            return HTMLResponse("<h1>bad_redirect_uri</h1>", status_code=400)
        sep = "&" if "?" in redirect else "?"
        if app.deny:
            return RedirectResponse(f"{redirect}{sep}{urlencode({'error': 'access_denied', 'state': state})}", 302)
        team = q.get("team") or app.install_team
        ws = self.state.workspaces.get(team or "")
        if ws is None:
            return HTMLResponse("<h1>no workspace to install into</h1>", status_code=400)
        scopes = {s for s in q.get("scope", "").split(",") if s}
        installer = next((u.id for u in ws.users.values() if not u.is_bot), None)
        code = f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.state.codes[code] = Grant(ws.team_id, app.client_id, scopes, redirect, installer=installer)
        return RedirectResponse(f"{redirect}{sep}{urlencode({'code': code, 'state': state})}", 302)

    def _client_auth(self, request: Request, args: dict[str, Any]) -> AppConfig | JSONResponse:
        client_id, secret = args.get("client_id"), args.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return fail("invalid_client_id")
        app = self.state.apps.get(str(client_id or ""))
        if app is None:
            return fail("invalid_client_id")
        if secret != app.client_secret:
            return fail("bad_client_secret")
        return app

    async def oauth_access(self, request: Request) -> Response:
        if (resp := await self.fault()) is not None:
            return resp
        args, _ = await self.args_of(request, json_ok=False)
        app = self._client_auth(request, args)
        if isinstance(app, JSONResponse):
            return app
        grant_type = args.get("grant_type") or "authorization_code"
        if grant_type == "authorization_code":
            grant = self.state.codes.get(str(args.get("code") or ""))
            if grant is None or grant.used or grant.client_id != app.client_id or time.time() - grant.created > 600:
                return fail("invalid_code")
            if grant.redirect_uri and args.get("redirect_uri") != grant.redirect_uri:
                return fail("bad_redirect_uri")
            grant.used = True
            self.state.stats["installs"] += 1
        elif grant_type == "refresh_token":
            grant = self.state.refresh_tokens.get(str(args.get("refresh_token") or ""))
            if grant is None or grant.used or grant.client_id != app.client_id:
                self.state.stats["refresh_failed"] += 1
                return fail("invalid_refresh_token")
            grant.used = True  # one-shot: the next refresh must use the token issued now
            self.state.stats["refreshes"] += 1
        else:
            return fail("invalid_grant_type")
        ws = self.state.workspaces[grant.team_id]
        issued = self.issue_token(ws.team_id, grant.scopes, app.client_id, app.token_rotation, app.token_lifetime)
        if ws.bot_user_id not in ws.users:
            ws.users[ws.bot_user_id] = User(ws.bot_user_id, "opensyte", is_bot=True)
        return ok(**issued, token_type="bot", scope=",".join(sorted(grant.scopes)), bot_user_id=ws.bot_user_id,
                  app_id=app.app_id, team={"name": ws.name, "id": ws.team_id}, enterprise=None,
                  is_enterprise_install=False, authed_user={"id": grant.installer or ""})

    # ---- methods ------------------------------------------------------------------------
    async def m_auth_test(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        return ok(url=f"https://{ws.domain}.slack.com/", team=ws.name, user="opensyte", team_id=ws.team_id,
                  user_id=ws.bot_user_id, bot_id=ws.bot_id, is_enterprise_install=False)

    async def m_auth_revoke(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        """The token stops working; `test=true` only says whether it would."""
        if str(args.get("test", "")).lower() in ("1", "true"):
            return ok(revoked=False)
        tok.revoked = True
        return ok(revoked=True)

    def content_error(self, args: dict[str, Any], limit_text: int | None = None) -> JSONResponse | None:
        text, blocks, atts = args.get("text"), args.get("blocks"), args.get("attachments")
        if not text and not blocks and not atts:
            return fail("no_text")
        if blocks is not None and (bad := self.block_errors(blocks)) is not None:
            return fail(bad[0], errors=bad[1]) if bad[1] else fail(bad[0])
        if isinstance(atts, str):
            try:
                atts = json.loads(atts)
            except ValueError:
                return fail("invalid_attachments")
        if isinstance(atts, list) and len(atts) > 100:
            return fail("too_many_attachments")
        if limit_text is not None and isinstance(text, str) and len(text) > limit_text:
            return fail("msg_too_long")
        return None

    async def m_chat_postMessage(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        if ch is None:
            return fail("channel_not_found")
        if ch.is_archived:
            return fail("is_archived")
        if not ch.is_im and ws.bot_user_id not in ch.members:
            return fail("not_in_channel")
        if (bad := self.content_error(args)) is not None:
            return bad
        meta = slack_history.parse_metadata(args.get("metadata"))
        if meta.error is not None:
            return fail(meta.error)
        # About one message per second per channel; the fake is strict so a limiter is really tested.
        # Counted at the request's arrival at Slack (after any inbound network delay), so arrival
        # jitter alone can put two paced posts less than a second apart.
        key = f"{ws.team_id}:{ch.id}"
        now = self.sandbox.arrival()
        last = self.state.post_log.get(key)
        seen = self.state.per_channel.setdefault(key, {"admitted": 0, "rejected_429": 0, "first": now, "last": now})
        if last is not None and abs(now - last) < 1.0:
            self.state.stats["429_channel"] += 1
            seen["rejected_429"] += 1
            return ratelimited(1.0 - (now - last))
        self.state.post_log[key] = now if last is None else max(now, last)
        seen["admitted"] += 1
        seen["first"], seen["last"] = min(seen["first"], now), max(seen["last"], now)
        ts = self.next_ts()
        msg: dict[str, Any] = {"type": "message", "subtype": "bot_message",
                               "text": str(args.get("text") or "")[:40_000], "user": ws.bot_user_id,
                               "bot_id": ws.bot_id, "ts": ts, "team": ws.team_id, "received_at": now}
        app = self.app()
        if meta.metadata is not None:
            msg["metadata"] = meta.metadata
            msg["app_id"] = app.app_id if app else None
        for k in ("blocks", "attachments"):
            if args.get(k) is not None:
                msg[k] = json.loads(args[k]) if isinstance(args[k], str) else args[k]
        if args.get("thread_ts"):
            msg["thread_ts"] = str(args["thread_ts"])
            if str(args.get("reply_broadcast")).lower() in ("true", "1"):
                msg["reply_broadcast"] = True
        if "chat:write.customize" in tok.scopes:
            msg.update({k: args[k] for k in ("username", "icon_emoji", "icon_url") if args.get(k)})
        ws.messages[ch.id].append(msg)
        self.state.stats["messages"] += 1
        public = slack_history.client_view(msg, False, self.declared_metadata())
        if meta.warning is not None:
            return ok(channel=ch.id, ts=ts, message=public, warning=meta.warning,
                      response_metadata={"warnings": [meta.warning]})
        return ok(channel=ch.id, ts=ts, message=public)

    def declared_metadata(self) -> set[str]:
        app = self.app()
        return set(app.metadata_event_types) if app else set()

    def find_message(self, ws: Workspace, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in ws.messages.get(channel, []) if m["ts"] == ts), None)

    async def m_chat_update(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        if ch is None:
            return fail("channel_not_found")
        msg = self.find_message(ws, ch.id, str(args.get("ts") or ""))
        if msg is None:
            return fail("message_not_found")
        if msg.get("user") != ws.bot_user_id:
            return fail("cant_update_message")
        if ch.is_archived:
            return fail("is_archived")
        if (bad := self.content_error(args, limit_text=4000)) is not None:
            return bad
        msg["text"] = str(args.get("text") or "")
        for k in ("blocks", "attachments"):
            if k in args:
                msg[k] = json.loads(args[k]) if isinstance(args[k], str) else args[k]
        msg["edited"] = {"user": ws.bot_user_id, "ts": self.next_ts()}
        public = {k: v for k, v in msg.items() if k not in ("received_at", "team")}
        return ok(channel=ch.id, ts=msg["ts"], text=msg["text"], message=public)

    async def m_chat_postEphemeral(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        if ch is None:
            return fail("channel_not_found")
        if ch.is_archived:
            return fail("is_archived")
        if not ch.is_im and ws.bot_user_id not in ch.members:
            return fail("not_in_channel")
        user = str(args.get("user") or "")
        if user not in ch.members:
            return fail("user_not_in_channel")
        if (bad := self.content_error(args)) is not None:
            return bad
        ts = self.next_ts()
        ws.ephemerals.append({"channel": ch.id, "user": user, "text": args.get("text"),
                              "blocks": args.get("blocks"), "message_ts": ts})
        return ok(message_ts=ts)

    def conversation_scope(self, tok: Token, ch: Channel | None) -> JSONResponse | None:
        needed = ("im:read",) if ch and ch.is_im else ("groups:read",) if ch and ch.is_private else ("channels:read",)
        return self.missing_scope(tok, needed)

    async def m_conversations_info(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        if (bad := self.conversation_scope(tok, ch)) is not None:
            return bad
        if ch is None:
            return fail("channel_not_found")
        return ok(channel=ch.public_dict(ws.bot_user_id))

    async def m_conversations_history(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        """Tier 3; channels:history, groups:history, im:history or mpim:history by conversation type.
        A bot reads only conversations it is in (not_in_channel otherwise)."""
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        needed = ("im:history",) if ch and ch.is_im else ("groups:history",) if ch and ch.is_private \
            else ("channels:history",)
        if (bad := self.missing_scope(tok, needed)) is not None:
            return bad
        if ch is None:
            return fail("channel_not_found")
        if not ch.is_im and ws.bot_user_id not in ch.members:
            return fail("not_in_channel")
        return slack_history.history(ws.messages.get(ch.id, []), args, self.declared_metadata())

    async def m_conversations_members(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ch = self.resolve(ws, args.get("channel"), ws.bot_user_id)
        if (bad := self.conversation_scope(tok, ch)) is not None:
            return bad
        if ch is None:
            return fail("channel_not_found")
        try:
            limit = int(args.get("limit") or 100)
        except ValueError:
            return fail("invalid_limit")
        if not 1 <= limit <= 1000:
            return fail("invalid_limit")
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().split(":", 1)[1])
            except (ValueError, IndexError, UnicodeDecodeError):
                return fail("invalid_cursor")
        page = ch.members[start:start + limit]
        nxt = start + limit
        cursor = base64.b64encode(f"offset:{nxt}".encode()).decode() if nxt < len(ch.members) else ""
        return ok(members=page, response_metadata={"next_cursor": cursor})

    async def m_conversations_join(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        ref = str(args.get("channel") or "")
        ch = ws.channels.get(ref)
        if ch is None:
            return fail("channel_not_found")
        if ch.is_private or ch.is_im:
            return fail("method_not_supported_for_channel_type")
        if ch.is_archived:
            return fail("is_archived")
        if ws.bot_user_id in ch.members:
            return ok(channel=ch.public_dict(ws.bot_user_id), warning="already_in_channel",
                      response_metadata={"warnings": ["already_in_channel"]})
        ch.members.append(ws.bot_user_id)
        self.state.stats["joins"] += 1
        return ok(channel=ch.public_dict(ws.bot_user_id))

    async def m_users_lookupByEmail(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        email = str(args.get("email") or "").lower()
        user = next((u for u in ws.users.values() if (u.email or "").lower() == email and email), None)
        if user is None:
            return fail("users_not_found")
        return ok(user={"id": user.id, "team_id": ws.team_id, "name": user.name, "deleted": user.deleted,
                        "real_name": user.real_name or user.name, "is_bot": user.is_bot,
                        "profile": {"email": user.email, "real_name": user.real_name or user.name}})

    async def m_views_open(self, ws: Workspace, tok: Token, args: dict[str, Any]) -> JSONResponse:
        trigger_id = args.get("trigger_id")
        if not trigger_id:
            return fail("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: "
                                                                             "trigger_id"]})
        trig = self.state.triggers.get(str(trigger_id))
        if trig is None:
            return fail("invalid_trigger_id")
        if trig["used"]:
            return fail("exchanged_trigger_id")
        if time.monotonic() - trig["at"] > TRIGGER_TTL:
            return fail("expired_trigger_id")
        view = args.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                return fail("invalid_arguments", response_metadata={"messages": ["invalid `view`"]})
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            return fail("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid `view.type`"]})
        if len(json.dumps(view)) > 250_000:
            return fail("view_too_large")
        title = (view.get("title") or {}).get("text", "")
        if not title or len(title) > 24:
            return fail("invalid_arguments", response_metadata={
                "messages": ["[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"]})
        if (bad := self.block_errors(view.get("blocks") or [], limit=100)) is not None:
            return fail("invalid_arguments", response_metadata={"messages": bad[1]})
        trig["used"] = True
        vid = _id("V")
        app = self.app()
        stored = {**view, "id": vid, "team_id": ws.team_id, "app_id": app.app_id if app else None,
                  "bot_id": ws.bot_id, "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
                  "state": {"values": {}}, "user": trig["user"], "private_metadata": view.get("private_metadata", ""),
                  "callback_id": view.get("callback_id", "")}
        self.state.views[vid] = stored
        return ok(view={k: v for k, v in stored.items() if k != "user"})

    # ---- response_url ---------------------------------------------------------------------
    def new_response_url(self, request: Request, ws: Workspace, channel: str, user: str,
                         message_ts: str | None, kind: str) -> str:
        hook_id, secret = str(secrets.randbelow(10**12)), secrets.token_urlsafe(18)
        self.state.response_urls[hook_id] = {"secret": secret, "team": ws.team_id, "channel": channel,
                                             "user": user, "message_ts": message_ts, "at": time.time(), "uses": 0}
        base = str(request.base_url).rstrip("/")
        return f"{base}/slack/hooks/{kind}/{ws.team_id}/{hook_id}/{secret}"

    async def response_url(self, hook_id: str, secret: str, request: Request) -> Response:
        hook = self.state.response_urls.get(hook_id)
        if hook is None or not secrets.compare_digest(hook["secret"], secret):
            return PlainTextResponse("no_service", status_code=404)
        if time.time() - hook["at"] > RESPONSE_URL_TTL or hook["uses"] >= RESPONSE_URL_USES:
            return PlainTextResponse("used_url", status_code=404)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks") or body.get("delete_original")):
            return PlainTextResponse("no_text", status_code=400)
        hook["uses"] += 1
        ws = self.state.workspaces[hook["team"]]
        if body.get("replace_original") and hook["message_ts"]:
            msg = self.find_message(ws, hook["channel"], hook["message_ts"])
            if msg is not None:
                msg.update({k: body[k] for k in ("text", "blocks") if k in body})
        elif body.get("response_type") == "in_channel":
            ws.messages[hook["channel"]].append({"type": "message", "text": body.get("text", ""),
                                                 "blocks": body.get("blocks"), "ts": self.next_ts(),
                                                 "user": ws.bot_user_id, "bot_id": ws.bot_id})
        self.state.responses.append({"hook_id": hook_id, "team": hook["team"], "channel": hook["channel"],
                                     "user": hook["user"], **body})
        return PlainTextResponse("ok")

    # ---- signed requests to the app (interactivity, commands, events) ----------------------
    async def deliver(self, url: str | None, body: bytes, content_type: str, opts: SignedOptions) -> dict[str, Any]:
        app = self.app()
        if app is None or not url:
            return {"status": 0, "error": "no app or request URL configured"}
        results = []
        for attempt in range(max(1, opts.repeat)):
            ts = str(int(time.time() + opts.timestamp_offset))
            secret = app.signing_secret if not opts.forge else app.signing_secret[::-1]
            sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""
            headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}
            retry = opts.retry_num if opts.retry_num is not None else (attempt or None)
            if retry:
                headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            t0 = time.monotonic()
            try:
                resp = await self.http().post(url, content=body, headers=headers)
                status, text = resp.status_code, resp.text
            except httpx.HTTPError as exc:
                status, text = 0, f"{type(exc).__name__}"
            took = time.monotonic() - t0
            results.append({"status": status, "body": text, "seconds": round(took, 3)})
            self.state.deliveries.append({"url": url, "status": status, "retry": retry, "seconds": took})
        first = results[0]
        return {**first, "deliveries": results}

    def issue_trigger(self, ws: Workspace, user: str) -> str:
        tid = f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**11)}.{secrets.token_hex(16)}"
        self.state.triggers[tid] = {"team": ws.team_id, "user": user, "at": time.monotonic(), "used": False}
        return tid

    def user_obj(self, ws: Workspace, user_id: str) -> dict[str, Any]:
        u = ws.users.get(user_id)
        name = u.name if u else user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": ws.team_id}

    def find_element(self, msg: dict[str, Any], action_id: str, value: str | None) -> tuple[str | None, dict[str, Any]]:
        for b in msg.get("blocks") or []:
            candidates = list(b.get("elements") or []) + ([b["accessory"]] if b.get("accessory") else [])
            for el in candidates:
                if el.get("action_id") == action_id and (value is None or el.get("value") == value):
                    return b.get("block_id"), el
        return None, {}

    async def click(self, inp: ClickIn, request: Request) -> dict[str, Any]:
        ws = self.state.workspaces.get(inp.team_id)
        if ws is None:
            return {"status": 0, "error": "unknown team"}
        msg = self.find_message(ws, inp.channel_id, inp.message_ts)
        if msg is None:
            return {"status": 0, "error": "message not found"}
        block_id, el = self.find_element(msg, inp.action_id, inp.value)
        if not el:
            return {"status": 0, "error": f"no element with action_id {inp.action_id!r} in that message"}
        ch = ws.channels[inp.channel_id]
        app = self.app()
        trigger = self.issue_trigger(ws, inp.user_id)
        payload = {
            "type": "block_actions", "user": self.user_obj(ws, inp.user_id), "api_app_id": app.app_id if app else "",
            "token": "verification_token",
            "container": {"type": "message", "message_ts": inp.message_ts, "channel_id": ch.id,
                          "is_ephemeral": False},
            "trigger_id": trigger, "team": {"id": ws.team_id, "domain": ws.domain},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": ch.id, "name": ch.name},
            "message": {k: v for k, v in msg.items() if k not in ("received_at", "team")},
            "response_url": self.new_response_url(request, ws, ch.id, inp.user_id, inp.message_ts, "actions"),
            "actions": [{"action_id": el.get("action_id"), "block_id": block_id, "text": el.get("text"),
                         "value": el.get("value"), "type": el.get("type"), "style": el.get("style"),
                         "action_ts": f"{time.time():.6f}"}],
        }
        body = f"payload={quote(json.dumps(payload))}".encode()
        res = await self.deliver(app.interactivity_url if app else None, body,
                                 "application/x-www-form-urlencoded", inp)
        return {**res, "trigger_id": trigger}

    async def submit_view(self, inp: SubmitViewIn, request: Request) -> dict[str, Any]:
        view = self.state.views.get(inp.view_id)
        if view is None:
            return {"status": 0, "error": "unknown view"}
        ws = self.state.workspaces[view["team_id"]]
        values = {b: {a: {"type": "plain_text_input", "value": v} for a, v in acts.items()}
                  for b, acts in inp.values.items()}
        app = self.app()
        payload = {
            "type": "view_submission", "team": {"id": ws.team_id, "domain": ws.domain},
            "user": self.user_obj(ws, inp.user_id), "api_app_id": app.app_id if app else "",
            "token": "verification_token", "trigger_id": self.issue_trigger(ws, inp.user_id),
            "view": {**{k: v for k, v in view.items() if k != "user"}, "state": {"values": values}},
            "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }
        body = f"payload={quote(json.dumps(payload))}".encode()
        return await self.deliver(app.interactivity_url if app else None, body,
                                  "application/x-www-form-urlencoded", inp)

    async def command(self, inp: CommandIn, request: Request) -> dict[str, Any]:
        ws = self.state.workspaces.get(inp.team_id)
        if ws is None:
            return {"status": 0, "error": "unknown team"}
        ch = ws.channels.get(inp.channel_id)
        app = self.app()
        response_url = self.new_response_url(request, ws, inp.channel_id, inp.user_id, None, "commands")
        form = {"token": "verification_token", "team_id": ws.team_id, "team_domain": ws.domain,
                "channel_id": inp.channel_id, "channel_name": ch.name if ch else "directmessage",
                "user_id": inp.user_id, "user_name": self.user_obj(ws, inp.user_id)["name"],
                "command": inp.command, "text": inp.text, "api_app_id": app.app_id if app else "",
                "is_enterprise_install": "false", "response_url": response_url,
                "trigger_id": self.issue_trigger(ws, inp.user_id)}
        return await self.deliver(app.commands_url if app else None, urlencode(form).encode(),
                                  "application/x-www-form-urlencoded", inp)

    async def shortcut(self, inp: ShortcutIn, request: Request) -> dict[str, Any]:
        ws = self.state.workspaces.get(inp.team_id)
        if ws is None:
            return {"status": 0, "error": "unknown team"}
        msg = self.find_message(ws, inp.channel_id, inp.message_ts)
        if msg is None:
            return {"status": 0, "error": "message not found"}
        app = self.app()
        ch = ws.channels[inp.channel_id]
        payload = {
            "type": "message_action", "callback_id": inp.callback_id, "token": "verification_token",
            "action_ts": f"{time.time():.6f}", "team": {"id": ws.team_id, "domain": ws.domain},
            "user": self.user_obj(ws, inp.user_id), "channel": {"id": ch.id, "name": ch.name},
            "message": {k: v for k, v in msg.items() if k not in ("received_at", "team")},
            "trigger_id": self.issue_trigger(ws, inp.user_id),
            "response_url": self.new_response_url(request, ws, ch.id, inp.user_id, inp.message_ts, "actions"),
        }
        body = f"payload={quote(json.dumps(payload))}".encode()
        return await self.deliver(app.interactivity_url if app else None, body,
                                  "application/x-www-form-urlencoded", inp)

    async def event(self, inp: EventIn) -> dict[str, Any]:
        app = self.app()
        if inp.url_verification:
            doc: dict[str, Any] = {"token": "verification_token", "challenge": secrets.token_urlsafe(24),
                                   "type": "url_verification"}
        else:
            doc = {"token": "verification_token", "team_id": inp.team_id, "api_app_id": app.app_id if app else "",
                   "event": inp.event, "type": "event_callback", "event_id": inp.event_id or _id("Ev"),
                   "event_time": int(time.time()),
                   "authorizations": [{"team_id": inp.team_id, "is_bot": True, "is_enterprise_install": False}]}
        res = await self.deliver(app.events_url if app else None, json.dumps(doc).encode(), "application/json", inp)
        return {**res, "sent": doc}

    # ---- control ------------------------------------------------------------------------
    def control_router(self) -> APIRouter:
        r = APIRouter()

        @r.post("/apps")
        async def add_app(cfg: AppConfig) -> dict[str, Any]:
            old = self.state.apps.get(cfg.client_id)
            if old is not None and "app_id" not in cfg.model_fields_set:
                cfg = cfg.model_copy(update={"app_id": old.app_id})
            self.state.apps = {cfg.client_id: cfg}  # one app per sandbox, like one app per deployment
            return {"ok": True, "app_id": cfg.app_id}

        @r.patch("/apps/{client_id}")
        async def patch_app(client_id: str, patch: dict[str, Any]) -> dict[str, Any]:
            self.state.apps[client_id] = self.state.apps[client_id].model_copy(update=patch)
            return {"ok": True}

        @r.post("/workspaces")
        async def add_workspace(inp: WorkspaceIn) -> dict[str, Any]:
            team = inp.team_id or _id("T", 9)
            if team not in self.state.workspaces:
                bot = inp.bot_user_id or _id("U", 9)
                ws = Workspace(team, inp.name, inp.domain or inp.name.lower().replace(" ", "-"), bot, _id("B", 9))
                ws.users[bot] = User(bot, "opensyte", is_bot=True)
                self.state.workspaces[team] = ws
            ws = self.state.workspaces[team]
            return {"ok": True, "team_id": team, "bot_user_id": ws.bot_user_id, "bot_id": ws.bot_id}

        @r.patch("/workspaces/{team}")
        async def patch_workspace(team: str, patch: dict[str, Any]) -> dict[str, Any]:
            ws = self.state.workspaces[team]
            if "active" in patch:
                ws.active = bool(patch["active"])
            if "tier_overrides" in patch:
                ws.tier_overrides = {str(k): int(v) for k, v in patch["tier_overrides"].items()}
            return {"ok": True}

        @r.post("/workspaces/{team}/users")
        async def add_user(team: str, inp: UserIn) -> dict[str, Any]:
            ws = self.state.workspaces[team]
            uid = inp.id or _id("U", 9)
            ws.users[uid] = User(uid, inp.name, inp.email, inp.real_name)
            return {"ok": True, "id": uid}

        @r.post("/workspaces/{team}/channels")
        async def add_channel(team: str, inp: ChannelIn) -> dict[str, Any]:
            ws = self.state.workspaces[team]
            cid = inp.id or _id("C", 9)
            members = list(dict.fromkeys(inp.members + ([ws.bot_user_id] if inp.bot_member else [])))
            ws.channels[cid] = Channel(cid, inp.name, inp.is_private, inp.is_archived, members=members)
            return {"ok": True, "id": cid}

        @r.patch("/workspaces/{team}/channels/{cid}")
        async def patch_channel(team: str, cid: str, patch: dict[str, Any]) -> dict[str, Any]:
            ch = self.state.workspaces[team].channels[cid]
            for k in ("is_archived", "is_private", "name"):
                if k in patch:
                    setattr(ch, k, patch[k])
            if "members" in patch:
                ch.members = list(patch["members"])
            return {"ok": True}

        @r.get("/workspaces/{team}/channels/{cid}")
        async def channel(team: str, cid: str) -> dict[str, Any]:
            ws = self.state.workspaces[team]
            ch = ws.channels[cid]
            return {"channel": {**ch.public_dict(ws.bot_user_id), "members": ch.members},
                    "messages": [{k: v for k, v in m.items() if k != "team"} for m in ws.messages.get(cid, [])]}

        @r.get("/messages")
        async def messages(request: Request, team: str | None = None, channel: str | None = None,
                           event_type: str | None = None) -> dict[str, Any]:
            """Posted messages (whether or not the client got the answer), newest last, with full metadata.
            Filter by team, channel, metadata event_type, and `payload.<key>=<value>` on the event_payload:
            count the messages accepted per intent."""
            wanted = {k.removeprefix("payload."): v for k, v in request.query_params.items()
                      if k.startswith("payload.")}
            found = []
            for ws in self.state.workspaces.values():
                if team is not None and ws.team_id != team:
                    continue
                for cid, msgs in ws.messages.items():
                    if channel is not None and cid != channel:
                        continue
                    for m in msgs:
                        meta = m.get("metadata") or {}
                        payload = meta.get("event_payload") or {}
                        if event_type is not None and meta.get("event_type") != event_type:
                            continue
                        if any(str(payload.get(k)) != v for k, v in wanted.items()):
                            continue
                        found.append({"team": ws.team_id, "channel": cid,
                                      **slack_history.client_view(m, True, set())})
            return {"count": len(found), "messages": found}

        @r.get("/workspaces/{team}/ephemerals")
        async def ephemerals(team: str) -> list[dict[str, Any]]:
            return self.state.workspaces[team].ephemerals

        @r.post("/tokens")
        async def add_token(inp: TokenIn) -> dict[str, Any]:
            issued = self.issue_token(inp.team_id, set(inp.scopes), inp.client_id, inp.rotation,
                                      inp.expires_in or 43_200)
            return {"ok": True, **issued}

        @r.post("/tokens/{action}")
        async def token_action(action: str, body: dict[str, str]) -> dict[str, Any]:
            tok = self.state.tokens[body["token"]]
            if action == "revoke":
                tok.revoked = True
            elif action == "expire":
                tok.expires_at = time.time() - 1
            else:
                return {"ok": False, "error": f"unknown action {action}"}
            return {"ok": True}

        @r.post("/click")
        async def click(inp: ClickIn, request: Request) -> dict[str, Any]:
            return await self.click(inp, request)

        @r.post("/submit_view")
        async def submit_view(inp: SubmitViewIn, request: Request) -> dict[str, Any]:
            return await self.submit_view(inp, request)

        @r.post("/command")
        async def command(inp: CommandIn, request: Request) -> dict[str, Any]:
            return await self.command(inp, request)

        @r.post("/shortcut")
        async def shortcut(inp: ShortcutIn, request: Request) -> dict[str, Any]:
            return await self.shortcut(inp, request)

        @r.post("/events")
        async def event(inp: EventIn) -> dict[str, Any]:
            return await self.event(inp)

        @r.get("/views")
        async def views() -> list[dict[str, Any]]:
            return list(self.state.views.values())

        @r.get("/responses")
        async def responses() -> list[dict[str, Any]]:
            return self.state.responses

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            return {**self.state.stats, "channels": self.state.per_channel}

        return r
