"""Web API calls on one Action: method table (verb, tier, scopes), limits before the call,
scope and channel pre-checks, auto-join."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from activities.slack.models import ChannelInfo
from activities.slack.settings import SlackSettings
from activities.slack.spec import INTENT_EVENT_TYPE, METHODS, SPEC, MethodSpec
from core.errors import ConfigurationError, IntegrationError, PermanentError
from core.limiter import Limit, Spacing
from core.pipeline import Action, Response
from vault.credentials import OAuth2Credentials

CHANNEL_CACHE = "slack.channels"
CHANNEL_LOCKS = "slack.channel_locks"


class SlackClient:
    """Slack Web API for one connection (its workspace's team id keys the rate limits)."""

    def __init__(self, act: Action) -> None:
        self.act = act
        self.team_id = str(act.settings.get("team_id") or act.connection.id)

    # ---- plumbing -----------------------------------------------------------------------
    def url(self, method: str) -> str:
        return f"{self.act.base_url().rstrip('/')}/{method}"

    def limits(self, spec: MethodSpec, channel: str | None = None) -> list[Limit]:
        """Slack's limits as our limiter's windows: per channel for posts, per method tier otherwise."""
        if spec.name == "chat.postMessage":
            return [SPEC.rate_limits["post_per_channel"].window(f"{self.team_id}:{channel or '-'}")]
        tier = SPEC.rate_limits.get(spec.tier) or SPEC.rate_limits["special"]
        return [tier.window(f"{self.team_id}:{spec.name}")]

    def spacing(self, spec: MethodSpec, channel: str | None) -> list[Spacing]:
        """Posts to one channel start a period after Slack answered the previous one (see `Spacing`)."""
        if spec.name != "chat.postMessage":
            return []
        post = SPEC.rate_limits["post_per_channel"]
        return [Spacing(post.scope, f"{self.team_id}:{channel or '-'}", post.period / post.limit)]

    async def granted_scopes(self) -> list[str]:
        creds = await self.act.credentials()
        return list(creds.scopes) if isinstance(creds, OAuth2Credentials) else []

    async def require_scopes(self, needed: tuple[str, ...], *, what: str, all_of: bool = False) -> None:
        """Refuse before the call when the install lacks a scope (unknown grants are not checked)."""
        if not needed:
            return
        granted = await self.granted_scopes()
        if not granted:
            return
        missing = [s for s in needed if s not in granted] if all_of else (
            [] if any(s in granted for s in needed) else list(needed))
        if missing:
            link = self.act.reauth_url()
            raise ConfigurationError(
                f"missing_scope: {what} needs {' or '.join(missing) if not all_of else ', '.join(missing)}; "
                f"the installation granted {', '.join(granted)}"
                + (f" — re-install the app to grant it: {link}" if link else ""),
                code="missing_scope", provider="slack",
                details={"needed": ",".join(missing), "provided": ",".join(granted)},
            )

    async def call(self, method: str, args: dict[str, Any] | None = None, *, channel: str | None = None,
                   category: str | None = None) -> dict[str, Any]:
        """One Web API call: JSON body for POST methods, query string for GET methods."""
        spec = METHODS[method]
        await self.require_scopes(spec.scopes, what=method)
        args = {k: v for k, v in (args or {}).items() if v is not None}
        kwargs: dict[str, Any] = {"json": args} if spec.http == "POST" else {"params": args}
        try:
            resp: Response = await self.act.call(
                spec.http, self.url(method), limits=self.limits(spec, channel), spacing=self.spacing(spec, channel),
                category=category,
                reference=(lambda b: (b or {}).get("ts")) if method == "chat.postMessage" else None, **kwargs,
            )
        except IntegrationError as err:
            if err.code == "missing_scope" and (link := self.act.reauth_url()):
                err.message += f" — re-install the app to grant it: {link}"
            # Name the Web API method: "unexpected HTTP 404 from Slack" alone does not say which call.
            if not err.message.startswith(f"{method}:"):
                err.message = f"{method}: {err.message}"
            err.details.setdefault("method", method)
            raise
        return resp.json()

    # ---- channel facts ---------------------------------------------------------------------
    def _cache(self) -> dict[tuple[str, str], tuple[float, ChannelInfo]]:
        cache: dict[tuple[str, str], tuple[float, ChannelInfo]] = self.act.rt.extras.setdefault(CHANNEL_CACHE, {})
        return cache

    def forget_channel(self, channel: str) -> None:
        self._cache().pop((self.act.connection.id, channel), None)

    async def channel_info(self, channel: str, *, use_cache: bool = True) -> ChannelInfo:
        key = (self.act.connection.id, channel)
        if use_cache:
            # Single flight: posts fanned out to one channel share one Tier 3 lookup instead of each
            # spending a slot of the 50-per-minute budget on the same answer.
            locks: dict[tuple[str, str], asyncio.Lock] = self.act.rt.extras.setdefault(CHANNEL_LOCKS, {})
            async with locks.setdefault(key, asyncio.Lock()):
                hit = self._cache().get(key)
                if hit and hit[0] > time.monotonic():
                    return hit[1]
                return await self._lookup_channel(channel)
        return await self._lookup_channel(channel)

    async def _lookup_channel(self, channel: str) -> ChannelInfo:
        body = await self.call("conversations.info", {"channel": channel})
        info = ChannelInfo.model_validate({k: v for k, v in (body.get("channel") or {}).items()
                                           if k in ChannelInfo.model_fields})
        self._remember(info)
        return info

    def _remember(self, info: ChannelInfo) -> None:
        ttl = self.act.rt.section(SlackSettings).channel_cache_seconds
        self._cache()[(self.act.connection.id, info.id)] = (time.monotonic() + ttl, info)

    def auto_join_allowed(self) -> bool:
        policy = self.act.settings.get("auto_join")
        return bool(self.act.rt.section(SlackSettings).auto_join_default if policy is None else policy)

    async def ensure_postable(self, channel: str) -> ChannelInfo | None:
        """The channel exists, is not archived and the bot is in it (joining public ones if allowed)."""
        if channel.startswith(("D", "U", "W")):
            return None  # a DM with the bot (by conversation or user ID): the bot is always in it
        try:
            info = await self.channel_info(channel)
        except IntegrationError as err:
            if err.code == "channel_not_found":
                bot = self.act.settings.get("bot_user_id")
                raise PermanentError(
                    f"channel_not_found: channel {channel} does not exist in this workspace, or it is private "
                    f"and the bot has not been invited (invite it with /invite {'<@' + bot + '>' if bot else ''})",
                    code="channel_not_found", provider="slack") from None
            raise
        name = f"#{info.name}" if info.name else channel
        if info.is_archived:
            raise PermanentError(f"is_archived: channel {name} ({channel}) is archived", code="is_archived",
                                 provider="slack")
        if info.is_member or info.is_im:
            return info
        bot = self.act.settings.get("bot_user_id")
        invite = f"/invite <@{bot}>" if bot else "/invite @<the app>"
        if info.is_private:
            raise ConfigurationError(
                f"not_in_channel: the bot is not a member of private channel {name} ({channel}); a member must "
                f"invite it with {invite} (bots cannot join private channels themselves)",
                code="not_in_channel", provider="slack", details={"channel": channel, "private": True})
        if not self.auto_join_allowed():
            raise ConfigurationError(
                f"not_in_channel: the bot is not a member of {name} ({channel}) and this connection does not "
                f"auto-join channels; invite it with {invite} or enable auto_join",
                code="not_in_channel", provider="slack", details={"channel": channel, "private": False})
        await self.require_scopes(("channels:join",), what=f"joining {name} automatically")
        body = await self.call("conversations.join", {"channel": channel})
        joined = ChannelInfo.model_validate({k: v for k, v in (body.get("channel") or {}).items()
                                             if k in ChannelInfo.model_fields} | {"is_member": True})
        self._remember(joined)
        self.act.detail["auto_joined"] = channel
        return joined

    # ---- methods ---------------------------------------------------------------------------
    async def post_message(self, payload: dict[str, Any], *, precheck: bool = True) -> dict[str, Any]:
        """chat.postMessage after the pre-checks; a stale "not in channel" joins once and retries once."""
        channel = str(payload["channel"])
        # Scopes first: no point in looking the channel up when posting is not allowed at all.
        await self.require_scopes(METHODS["chat.postMessage"].scopes, what="chat.postMessage")
        if precheck:
            await self.ensure_postable(channel)
        try:
            return await self.call("chat.postMessage", payload, channel=channel, category="message")
        except IntegrationError as err:
            if err.code in ("channel_not_found", "is_archived"):
                self.forget_channel(channel)
            if err.code != "not_in_channel" or not precheck or channel.startswith(("U", "W", "D")):
                raise
            self.forget_channel(channel)
        await self.ensure_postable(channel)
        return await self.call("chat.postMessage", payload, channel=channel, category="message")

    async def find_intent(self, channel: str, intent_id: str, oldest: float, pages: int = 3) -> dict[str, Any] | None:
        """The message in `channel` (since `oldest`) whose metadata names this send intent, if Slack has it.

        Raises an IntegrationError when the history cannot be read (no history scope, channel gone): the
        caller then cannot decide and posts again."""
        cursor: str | None = None
        for _ in range(pages):
            body = await self.call("conversations.history", {
                "channel": channel, "oldest": f"{oldest:.6f}", "limit": 200, "include_all_metadata": True,
                "cursor": cursor}, channel=channel)
            for msg in body.get("messages") or []:
                meta = msg.get("metadata") or {}
                if meta.get("event_type") == INTENT_EVENT_TYPE and (meta.get("event_payload") or {}).get(
                        "intent") == intent_id:
                    return dict(msg)
            cursor = (body.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or not body.get("has_more"):
                return None
        return None

    async def members(self, channel: str, max_members: int) -> tuple[list[str], bool]:
        out: list[str] = []
        cursor: str | None = None
        while True:
            body = await self.call("conversations.members", {"channel": channel, "limit": 200, "cursor": cursor})
            out.extend(body.get("members") or [])
            cursor = (body.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return out[:max_members], True
            if len(out) >= max_members:
                return out[:max_members], False
