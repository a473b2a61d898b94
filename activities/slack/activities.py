"""Slack Temporal activities; each runs through the shared action pipeline."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.slack.blocks import render, render_text, validate_attachments, validate_blocks, validate_view
from activities.slack.client import SlackClient
from activities.slack.models import (
    AdminNotified,
    AdminNotifyInput,
    AuthInfo,
    AuthTestInput,
    ChannelInfo,
    ConversationInput,
    DirectMessageInput,
    EphemeralInput,
    EphemeralResult,
    LookupUserInput,
    MembersInput,
    MembersResult,
    MessageContent,
    MessageRef,
    OpenViewInput,
    PostMessageInput,
    SlackCommandInput,
    SlackStatusReport,
    SlackUser,
    UpdateMessageInput,
    ViewRef,
)
from activities.slack.provider import PROVIDER
from activities.slack.spec import CUSTOMIZE_SCOPE, INTENT_EVENT_TYPE, MAX_TEXT_POST, MAX_TEXT_UPDATE, SPEC
from core.errors import ErrorClass, IntegrationError, PermanentError, TemporaryError
from store.intents import Claim, IntentStore, Settle
from store.models import IntentState

if TYPE_CHECKING:
    from core.pipeline import Action
    from core.runtime import Runtime


log = logging.getLogger("osi.slack")


def content_payload(content: MessageContent, *, max_text: int = MAX_TEXT_POST) -> dict[str, Any]:
    """Text, blocks and attachments with variables filled and Block Kit validated (PermanentError)."""
    variables = content.variables
    out: dict[str, Any] = {}
    if content.text is not None:
        text = render_text(content.text, variables)
        if len(text) > max_text:
            raise PermanentError(f"text: {len(text)} characters; Slack accepts at most {max_text} here",
                                 code="msg_too_long", provider="slack")
        out["text"] = text
    if content.blocks is not None:
        out["blocks"] = validate_blocks(render(content.blocks, variables))
    if content.attachments is not None:
        out["attachments"] = validate_attachments(render(content.attachments, variables))
    return out


def post_payload(inp: PostMessageInput) -> dict[str, Any]:
    payload: dict[str, Any] = {"channel": inp.target, **content_payload(inp)}
    payload.update({k: v for k, v in {
        "thread_ts": inp.thread_ts, "reply_broadcast": True if inp.reply_broadcast else None,
        "username": inp.username, "icon_emoji": inp.icon_emoji, "icon_url": inp.icon_url,
        "mrkdwn": None if inp.mrkdwn else False,
    }.items() if v is not None})
    return payload


class SlackActivities:
    """Activities bound to the worker's runtime (store, Vault, HTTP, limiter)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def _post(self, act: Action, inp: PostMessageInput) -> MessageRef:
        """chat.postMessage under a send intent: the post carries the intent in its metadata, so a post whose
        answer was lost is found in the channel's history instead of being posted twice."""
        payload = post_payload(inp)
        client = SlackClient(act)
        key = act.idempotency_key(inp.idempotency_key, inp.target)
        if inp.username or inp.icon_emoji or inp.icon_url:
            await client.require_scopes((CUSTOMIZE_SCOPE,), what="setting the bot's name or icon per message")
        if not key:
            return self._ref(act, client, await client.post_message(payload), payload, inp)
        intents = IntentStore(self.rt.store)
        # No webhook will name a lost post: the channel's history decides at once (reconcile window 0).
        claim = (await self.rt.store.run(intents.claim, [key], organization_id=act.organization_id,
                                         connection_id=act.connection.id, action=act.name,
                                         reconcile_seconds=0.0))[key]
        if claim.final:
            if claim.intent.state == IntentState.FAILED.value:
                raise PermanentError(str((claim.intent.result.get("error") or {}).get("message") or "refused"),
                                     code=(claim.intent.result.get("error") or {}).get("code"), provider="slack")
            return MessageRef.model_validate(claim.intent.result)
        if not claim.send:
            raise TemporaryError("another attempt of this post is in flight", code="reconciling",
                                 retry_after=claim.wait_seconds)
        if claim.resend and (found := await self._already_posted(client, payload, claim)) is not None:
            ref = self._ref(act, client, found, payload, inp)
            act.defer(functools.partial(IntentStore.settle_in, outcomes=[
                Settle(key, IntentState.ACCEPTED, ref.ts, ref.model_dump())]))
            return ref
        payload["metadata"] = {"event_type": INTENT_EVENT_TYPE, "event_payload": {"intent": claim.intent.id}}
        try:
            body = await client.post_message(payload)
        except IntegrationError as err:
            if not err.details.get("uncertain"):
                state = IntentState.FAILED if err.error_class is ErrorClass.PERMANENT else IntentState.PENDING
                act.defer(functools.partial(IntentStore.settle_in, outcomes=[
                    Settle(key, state, result={"error": err.to_dict()})]))
            raise
        ref = self._ref(act, client, body, payload, inp)
        # Written with the action's bookkeeping, in its one transaction when the action ends.
        act.defer(functools.partial(IntentStore.settle_in, outcomes=[
            Settle(key, IntentState.ACCEPTED, ref.ts, ref.model_dump())]))
        return ref

    def _ref(self, act: Action, client: SlackClient, body: dict[str, Any], payload: dict[str, Any],
             inp: PostMessageInput) -> MessageRef:
        ref = MessageRef(channel=str(body.get("channel") or payload["channel"]), ts=str(body["ts"]),
                         thread_ts=inp.thread_ts, team_id=client.team_id)
        act.detail["ts"] = ref.ts
        return ref

    async def _already_posted(self, client: SlackClient, payload: dict[str, Any], claim: Claim
                              ) -> dict[str, Any] | None:
        """An earlier attempt's answer was lost: look for its message before posting again. A DM addressed by
        user id, or a history we may not read, cannot be searched: then we post again (counted as resent)."""
        channel = str(payload["channel"])
        if channel.startswith(("U", "W")) or claim.intent.last_attempt_at is None:
            return None
        try:
            found = await client.find_intent(channel, claim.intent.id,
                                             claim.intent.last_attempt_at.timestamp() - 600)
        except IntegrationError as err:
            log.info("slack: cannot search %s for a lost post (%s): posting again", channel, err.code)
            return None
        return None if found is None else {**found, "channel": channel}

    @activity.defn(name="slack.post_message")
    async def post_message(self, inp: PostMessageInput) -> MessageRef:
        """Post text and/or Block Kit to a channel or a user's DM, after permission pre-checks."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.post_message",
                                  target=inp.target) as act:
            return await self._post(act, inp)

    @activity.defn(name="slack.send_dm")
    async def send_dm(self, inp: DirectMessageInput) -> MessageRef:
        """A DM to a person by user ID, or by e-mail through users.lookupByEmail."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.send_dm",
                                  target=inp.user_id or inp.email) as act:
            user_id = inp.user_id
            if user_id is None:
                body = await SlackClient(act).call("users.lookupByEmail", {"email": inp.email})
                user_id = str((body.get("user") or {})["id"])
            post = PostMessageInput(organization_id=inp.organization_id, connection=inp.connection,
                                    user_id=user_id, text=inp.text, blocks=inp.blocks,
                                    attachments=inp.attachments, variables=inp.variables)
            return await self._post(act, post)

    @activity.defn(name="slack.update_message")
    async def update_message(self, inp: UpdateMessageInput) -> MessageRef:
        """chat.update of a message the bot posted (text at most 4,000 characters)."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.update_message",
                                  target=f"{inp.channel}/{inp.ts}") as act:
            payload = {"channel": inp.channel, "ts": inp.ts, **content_payload(inp, max_text=MAX_TEXT_UPDATE)}
            client = SlackClient(act)
            body = await client.call("chat.update", payload)
            return MessageRef(channel=str(body.get("channel") or inp.channel), ts=str(body.get("ts") or inp.ts),
                              team_id=client.team_id)

    @activity.defn(name="slack.post_ephemeral")
    async def post_ephemeral(self, inp: EphemeralInput) -> EphemeralResult:
        """A message only `user` sees, in `channel`."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.post_ephemeral",
                                  target=f"{inp.channel}/{inp.user}") as act:
            payload = {"channel": inp.channel, "user": inp.user, "thread_ts": inp.thread_ts,
                       **content_payload(inp)}
            body = await SlackClient(act).call("chat.postEphemeral", payload)
            return EphemeralResult(message_ts=str(body.get("message_ts", "")))

    @activity.defn(name="slack.lookup_user_by_email")
    async def lookup_user_by_email(self, inp: LookupUserInput) -> SlackUser:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection,
                                  "slack.lookup_user_by_email") as act:
            body = await SlackClient(act).call("users.lookupByEmail", {"email": inp.email})
            user = body.get("user") or {}
            return SlackUser(id=str(user.get("id")), team_id=user.get("team_id"), name=user.get("name"),
                             real_name=user.get("real_name"), email=(user.get("profile") or {}).get("email"),
                             is_bot=bool(user.get("is_bot")), deleted=bool(user.get("deleted")))

    @activity.defn(name="slack.auth_test")
    async def auth_test(self, inp: AuthTestInput) -> AuthInfo:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.auth_test") as act:
            return _auth_info(await SlackClient(act).call("auth.test"))

    @activity.defn(name="slack.conversation_info")
    async def conversation_info(self, inp: ConversationInput) -> ChannelInfo:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection,
                                  "slack.conversation_info", target=inp.channel) as act:
            return await SlackClient(act).channel_info(inp.channel, use_cache=False)

    @activity.defn(name="slack.conversation_members")
    async def conversation_members(self, inp: MembersInput) -> MembersResult:
        """Every member of a conversation (paginated), up to `max_members`."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection,
                                  "slack.conversation_members", target=inp.channel) as act:
            members, complete = await SlackClient(act).members(inp.channel, inp.max_members)
            return MembersResult(channel=inp.channel, members=members, complete=complete)

    @activity.defn(name="slack.open_view")
    async def open_view(self, inp: OpenViewInput) -> ViewRef:
        """views.open with a trigger id (valid for 3 s: the gateway uses `open_view_now`, not Temporal)."""
        return await self.open_view_now(inp)

    async def open_view_now(self, inp: OpenViewInput, *, actor: str = "workflow") -> ViewRef:
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "slack.open_view",
                                  actor=actor) as act:
            body = await SlackClient(act).call("views.open", {"trigger_id": inp.trigger_id,
                                                              "view": validate_view(inp.view)})
            view = body.get("view") or {}
            return ViewRef(id=str(view.get("id")), hash=view.get("hash"))

    @activity.defn(name="slack.notify_admins")
    async def notify_admins(self, inp: AdminNotifyInput) -> AdminNotified:
        """Record a notification for the organization's administrators (the last fallback route)."""
        connection_id = None
        if inp.connection:
            conns = await self.rt.store.run(self.rt.store.list_connections, inp.organization_id,
                                            SPEC.integration_type)
            connection_id = next((c.id for c in conns if c.name == inp.connection), None)
        note = await self.rt.notify_admins(inp.organization_id, inp.kind, inp.message,
                                           connection_id=connection_id, severity="warning")
        assert note.id is not None
        return AdminNotified(notification_id=note.id)

    @activity.defn(name="slack.status_report")
    async def status_report(self, inp: SlackCommandInput) -> SlackStatusReport:
        """`/opensyte status`: the connections installed in the caller's workspace and their health."""
        conns = await self.rt.store.run(self.rt.store.find_connections_by_setting, SPEC.integration_type,
                                        "team_id", inp.team_id)
        rows: list[dict[str, Any]] = []
        lines = [f"*OpenSyte integrations for this workspace* ({len(conns)} connection"
                 f"{'' if len(conns) == 1 else 's'})"]
        for c in conns:
            rows.append({"organization_id": c.organization_id, "name": c.name, "status": c.status,
                         "health": c.health, "requests": c.request_count, "errors": c.error_count,
                         "last_used_at": c.last_used_at.isoformat() if c.last_used_at else None})
            icon = {"healthy": ":large_green_circle:", "unhealthy": ":red_circle:",
                    "degraded": ":large_yellow_circle:"}.get(c.health, ":white_circle:")
            lines.append(f"{icon} `{c.name}` ({c.organization_id}): {c.status}, {c.health} — "
                         f"{c.request_count} calls, {c.error_count} errors")
        if not conns:
            lines.append("No OpenSyte organization is connected to this workspace.")
        return SlackStatusReport(text="\n".join(lines), connections=rows)

    def all(self) -> list[Any]:
        return [self.post_message, self.send_dm, self.update_message, self.post_ephemeral,
                self.lookup_user_by_email, self.auth_test, self.conversation_info, self.conversation_members,
                self.open_view, self.notify_admins, self.status_report]


def _auth_info(body: dict[str, Any]) -> AuthInfo:
    return AuthInfo(team_id=str(body.get("team_id", "")), team=body.get("team"), user_id=body.get("user_id"),
                    bot_id=body.get("bot_id"), url=body.get("url"))


async def revoke(act: Action) -> dict[str, Any]:
    """auth.revoke: the bot token stops working at once (the install link can add the app again)."""
    try:
        body = await SlackClient(act).call("auth.revoke", {})
    except IntegrationError as err:
        if err.code in ("invalid_auth", "token_revoked", "token_expired", "account_inactive"):
            return {"revoked": True, "note": f"the token was already unusable ({err.code})"}
        raise
    return {"revoked": bool(body.get("revoked"))}


async def test_connection(act: Action) -> dict[str, Any]:
    """auth.test through the pipeline, plus what the installation lacks."""
    client = SlackClient(act)
    info = _auth_info(await client.call("auth.test"))
    granted = await client.granted_scopes()
    problems: list[str] = []
    expected_team = act.settings.get("team_id")
    if expected_team and info.team_id != expected_team:
        problems.append(f"token belongs to workspace {info.team_id}, connection expects {expected_team}")
    missing = [s for s in SPEC.scopes if granted and s not in granted]
    if missing:
        problems.append(f"scopes not granted: {', '.join(missing)} (re-install to grant them)")
    return {"ok": not problems, "problems": problems, "auth": info.model_dump(), "scopes": granted}
