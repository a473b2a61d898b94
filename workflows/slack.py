"""Slack workflows: a notification with fallback routes, an approval decided from Slack, `/opensyte status`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.slack.activities import SlackActivities
    from activities.slack.blocks import plain_text, render, render_text
    from activities.slack.models import (
        AdminNotifyInput,
        AdminRoute,
        ApprovalContext,
        ChannelRoute,
        DirectMessageInput,
        DirectMessageRoute,
        EphemeralInput,
        MembersInput,
        PostMessageInput,
        RouteAttempt,
        SendSlackMessageInput,
        SendSlackMessageResult,
        SlackApprovalInput,
        SlackApprovalResult,
        SlackCommandInput,
        SlackInteraction,
        SlackStatusReport,
        UpdateMessageInput,
        WhatsAppRoute,
    )
    from activities.slack.webhooks import APPROVE_ACTION, BLOCK_PREFIX, REJECT_ACTION
    from core.errors import error_from_details
    from core.policies import BOOKKEEPING, LOOKUP, SLACK_SEND, deadline_of
    from core.visibility import raise_if_all_failed
from workflows import events

# WhatsApp messages carry at most this much text.
WHATSAPP_TEXT_LIMIT = 4096
# Input that fails validation (a channel name instead of an ID, asUser, ...) fails the workflow at once
# with pydantic's message naming the field, instead of retrying the workflow task forever.
BAD_INPUT = [ValidationError]


def _failure(err: BaseException) -> dict[str, Any]:
    return error_from_details(err) or {"message": str(err)}


@workflow.defn(name="SendSlackMessage", failure_exception_types=BAD_INPUT)
class SendSlackMessage:
    """Post a message; when that fails for good (or the connection needs re-authentication), try the
    fallback routes in order. The result names the route that delivered it; a fallback is `partial`. When no
    route reached people (only the administrators were told, or nothing worked) the workflow ends Failed, typed
    by the routes' failures (ConfigurationError when one needs an administrator), the result in its details."""

    @workflow.run
    async def run(self, inp: SendSlackMessageInput) -> SendSlackMessageResult:
        attempts: list[RouteAttempt] = []
        try:
            ref = await workflow.execute_activity_method(SlackActivities.post_message, inp.primary(),
                                                         **SLACK_SEND.kwargs(deadline_of(inp.deliver_within)))
            attempts.append(RouteAttempt(route="slack", ok=True))
            return SendSlackMessageResult(delivered=True, route="slack", channel=ref.channel, ts=ref.ts,
                                          attempts=attempts)
        except ActivityError as err:
            attempts.append(RouteAttempt(route="slack", ok=False, error=_failure(err)))
        for i, route in enumerate(inp.fallback):
            name = f"fallback[{i}]:{route.kind}"
            try:
                result = await self._fallback(inp, i, route, attempts)
            except (ActivityError, ChildWorkflowError) as err:
                attempts.append(RouteAttempt(route=name, ok=False, error=_failure(err)))
                continue
            if result is None:
                attempts.append(RouteAttempt(route=name, ok=False, error={"message": "no recipient accepted it"}))
                continue
            attempts.append(RouteAttempt(route=name, ok=True))
            result = result.model_copy(update={"route": name, "attempts": attempts, "fallback": True,
                                               "outcome": "partial" if result.delivered else "failed"})
            if result.delivered:
                return result
            self._fail(result)
        self._fail(SendSlackMessageResult(delivered=False, outcome="failed", attempts=attempts))
        raise AssertionError("unreachable")  # pragma: no cover - _fail raises

    @staticmethod
    def _fail(result: SendSlackMessageResult) -> None:
        """Nobody got the message: the workflow ends Failed (`core.visibility.raise_if_all_failed`)."""
        errors = [a.error for a in result.attempts if not a.ok]
        where = "administrators notified" if result.notification_id else "no fallback route delivered it"
        raise_if_all_failed(reached=0, failed=max(1, len(errors)), errors=errors,
                            what=f"Slack message not delivered ({where})", result=result)

    async def _fallback(self, inp: SendSlackMessageInput, i: int, route: Any,
                        attempts: list[RouteAttempt]) -> SendSlackMessageResult | None:
        if isinstance(route, ChannelRoute):
            post = PostMessageInput(
                organization_id=inp.organization_id, connection=route.connection or inp.connection,
                channel=route.channel, text=inp.message, blocks=inp.blocks, attachments=inp.attachments,
                username=inp.username, icon_emoji=inp.icon_emoji, icon_url=inp.icon_url, variables=inp.variables)
            ref = await workflow.execute_activity_method(SlackActivities.post_message, post, **SLACK_SEND.kwargs())
            return SendSlackMessageResult(delivered=True, channel=ref.channel, ts=ref.ts)
        if isinstance(route, DirectMessageRoute):
            dm = DirectMessageInput(
                organization_id=inp.organization_id, connection=route.connection or inp.connection,
                user_id=route.user_id, email=route.email, text=inp.message, blocks=inp.blocks,
                attachments=inp.attachments, variables=inp.variables)
            ref = await workflow.execute_activity_method(SlackActivities.send_dm, dm, **SLACK_SEND.kwargs())
            return SendSlackMessageResult(delivered=True, channel=ref.channel, ts=ref.ts)
        text = plain_text(render_text(inp.message, inp.variables) if inp.message else None,
                          render(inp.blocks, inp.variables))
        if isinstance(route, WhatsAppRoute):
            # Started by name with plain JSON: the WhatsApp plugin owns its input model.
            child: dict[str, Any] = {"organization_id": inp.organization_id, "connection": route.connection,
                                     "to": route.to}
            child |= ({"type": "template", "template": route.template} if route.template
                      else {"text": text[:WHATSAPP_TEXT_LIMIT]})
            res: dict[str, Any] = await workflow.execute_child_workflow(
                "SendWhatsAppMessage", child,
                id=f"{workflow.info().workflow_id}-whatsapp-{i}", result_type=dict,
            )
            ids = [r["message_id"] for r in res.get("results") or [] if r.get("message_id")]
            if not ids:
                return None
            return SendSlackMessageResult(delivered=True, whatsapp_message_ids=ids)
        if isinstance(route, AdminRoute):
            failures = "; ".join(f"{a.route}: {(a.error or {}).get('message', 'failed')}"
                                 for a in attempts if not a.ok)
            target = inp.channel or inp.user_id
            note = await workflow.execute_activity_method(
                SlackActivities.notify_admins,
                AdminNotifyInput(organization_id=inp.organization_id, connection=inp.connection,
                                 kind="slack_undelivered",
                                 message=f"A Slack message for {target} could not be delivered ({failures}). "
                                         f"Message: {text[:2000]}"),
                **BOOKKEEPING.kwargs(),
            )
            # Administrators were told; the message itself reached nobody.
            return SendSlackMessageResult(delivered=False, notification_id=note.notification_id)
        raise ApplicationError(f"unknown fallback route {route!r}", type="PermanentError", non_retryable=True)


def _date_token(epoch: int, iso: str) -> str:
    """Slack renders this in each reader's own time zone; the fallback is the ISO time."""
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{iso}>"


@workflow.defn(name="SlackApproval", failure_exception_types=BAD_INPUT)
class SlackApproval:
    """Post Approve/Reject, wait (with reminders) for an allowed person to decide, update the message
    with who decided and when, and return the decision. Clicks arrive as `slack_interaction` signals."""

    def __init__(self) -> None:
        self.inp: SlackApprovalInput | None = None
        self.pending: list[SlackInteraction] = []
        self.seen: set[str] = set()
        self.allowed: set[str] = set()
        self.team_id: str | None = None
        self.ts: str | None = None
        self.decided: SlackInteraction | None = None
        self.members_checked: set[str] = set()

    @workflow.signal(name="slack_interaction")
    def slack_interaction(self, ev: SlackInteraction) -> None:
        """Only records (deduplicated); the run loop decides what a click means."""
        if ev.key in self.seen:
            return
        self.seen.add(ev.key)
        self.pending.append(ev)

    @workflow.query(name="approval_context")
    def approval_context(self, user_id: str) -> ApprovalContext:
        inp = self.inp
        assert inp is not None
        return ApprovalContext(organization_id=inp.organization_id, connection=inp.connection,
                               team_id=self.team_id, channel=inp.channel, open=self.decided is None,
                               allowed=user_id in self.allowed, allow_comment=inp.allow_comment)

    # ---- message content -----------------------------------------------------------------
    def _request_blocks(self, inp: SlackApprovalInput) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": inp.title}}]
        if inp.text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": inp.text}})
        if inp.fields:
            blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"}
                                                         for k, v in inp.fields.items()]})
        who = [f"<@{u}>" for u in inp.approvers[:10]] + ([f"members of <#{inp.approver_channel}>"]
                                                         if inp.approver_channel else [])
        context = f"Can decide: {', '.join(who)}"
        if inp.requested_by:
            context = f"Requested by {inp.requested_by} · {context}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]})
        return blocks

    def _buttons(self, wf_id: str, inp: SlackApprovalInput) -> dict[str, Any]:
        return {"type": "actions", "block_id": BLOCK_PREFIX + wf_id, "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": wf_id,
             "text": {"type": "plain_text", "text": inp.approve_label}},
            {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": wf_id,
             "text": {"type": "plain_text", "text": inp.reject_label}},
        ]}

    # ---- helpers ---------------------------------------------------------------------------
    async def _channel_members(self, inp: SlackApprovalInput) -> set[str]:
        assert inp.approver_channel is not None
        res = await workflow.execute_activity_method(
            SlackActivities.conversation_members,
            MembersInput(organization_id=inp.organization_id, connection=inp.connection,
                         channel=inp.approver_channel),
            **LOOKUP.kwargs(),
        )
        return set(res.members)

    async def _is_allowed(self, inp: SlackApprovalInput, user: str) -> bool:
        if user in self.allowed:
            return True
        if inp.approver_channel and user not in self.members_checked:
            # Memberships change: look again (once per person) before refusing someone.
            self.members_checked.add(user)
            try:
                self.allowed |= await self._channel_members(inp)
            except ActivityError:
                return False
        return user in self.allowed

    async def _ephemeral(self, inp: SlackApprovalInput, ev: SlackInteraction, text: str) -> None:
        try:
            await workflow.execute_activity_method(
                SlackActivities.post_ephemeral,
                EphemeralInput(organization_id=inp.organization_id, connection=inp.connection,
                               channel=ev.channel_id or inp.channel, user=ev.user_id, text=text),
                **SLACK_SEND.kwargs(),
            )
        except ActivityError as err:
            workflow.logger.warning("ephemeral to %s failed: %s", ev.user_id, _failure(err))

    async def _handle(self, inp: SlackApprovalInput, ev: SlackInteraction, refused: list[str]) -> None:
        if self.team_id and ev.team_id != self.team_id:
            workflow.logger.warning("ignoring an interaction from workspace %s", ev.team_id)
            return
        wf_id = workflow.info().workflow_id
        await events.emit(inp.organization_id, [("slack.interaction", {
            "workflow_id": wf_id, "connection": inp.connection, "title": inp.title, **ev.model_dump(mode="json")},
            f"{wf_id}:{ev.key}")])
        if not await self._is_allowed(inp, ev.user_id):
            refused.append(ev.user_id)
            await self._ephemeral(inp, ev, f":no_entry: You are not allowed to decide on “{inp.title}”. "
                                           "Only the approvers named in the request can.")
            return
        if ev.decision is None:
            await self._ephemeral(inp, ev, f"“{inp.title}” is waiting for your decision: use the buttons "
                                           "on the message.")
            return
        if inp.allow_comment and ev.kind == "block_actions":
            return  # the gateway opened the comment modal; its submission carries the decision
        self.decided = ev

    # ---- run ---------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: SlackApprovalInput) -> SlackApprovalResult:
        self.inp = inp
        wf_id = workflow.info().workflow_id
        if len(BLOCK_PREFIX + wf_id) > 255:
            raise ApplicationError("workflow id too long for a Slack block_id (max 251 characters)",
                                   type="PermanentError", non_retryable=True)
        self.allowed = set(inp.approvers)
        if inp.approver_channel:
            self.allowed |= await self._channel_members(inp)
        request_blocks = self._request_blocks(inp)
        ref = await workflow.execute_activity_method(
            SlackActivities.post_message,
            PostMessageInput(organization_id=inp.organization_id, connection=inp.connection, channel=inp.channel,
                             text=f"Approval needed: {inp.title}",
                             blocks=[*request_blocks, self._buttons(wf_id, inp)]),
            **SLACK_SEND.kwargs(),
        )
        self.team_id, self.ts = ref.team_id, ref.ts
        started = workflow.now()
        deadline = started + timedelta(seconds=inp.timeout_seconds)
        reminders = 0
        next_reminder = started + timedelta(seconds=inp.reminder_seconds) if inp.reminder_seconds else None
        refused: list[str] = []
        while self.decided is None:
            now = workflow.now()
            if now >= deadline:
                break
            wake = deadline
            if next_reminder is not None and reminders < inp.max_reminders:
                wake = min(wake, next_reminder)
            try:
                await workflow.wait_condition(lambda: bool(self.pending),
                                              timeout=max(timedelta(milliseconds=1), wake - now))
            except TimeoutError:
                pass
            while self.pending and self.decided is None:
                await self._handle(inp, self.pending.pop(0), refused)
            if (self.decided is None and next_reminder is not None and reminders < inp.max_reminders
                    and workflow.now() >= next_reminder and workflow.now() < deadline):
                reminders += 1
                next_reminder += timedelta(seconds=inp.reminder_seconds or 0)
                await self._remind(inp, ref.channel, ref.ts, reminders)
        result = await self._finish(inp, ref.channel, ref.ts, request_blocks, reminders, refused)
        await events.emit(inp.organization_id, [("slack.approval.decided", {
            "workflow_id": wf_id, "connection": inp.connection, "title": inp.title,
            **result.model_dump(mode="json")}, f"{wf_id}:decided")])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _remind(self, inp: SlackApprovalInput, channel: str, ts: str, n: int) -> None:
        who = " ".join(f"<@{u}>" for u in inp.approvers[:10]) or f"members of <#{inp.approver_channel}>"
        try:
            await workflow.execute_activity_method(
                SlackActivities.post_message,
                PostMessageInput(organization_id=inp.organization_id, connection=inp.connection, channel=channel,
                                 thread_ts=ts, text=f":bell: Reminder {n}: “{inp.title}” is still waiting for a "
                                                    f"decision from {who}."),
                **SLACK_SEND.kwargs(),
            )
        except ActivityError as err:
            workflow.logger.warning("reminder %d failed: %s", n, _failure(err))

    async def _finish(self, inp: SlackApprovalInput, channel: str, ts: str, request_blocks: list[dict[str, Any]],
                      reminders: int, refused: list[str]) -> SlackApprovalResult:
        now = workflow.now()
        iso = now.isoformat(timespec="seconds")
        ev = self.decided
        if ev is None:
            decision = "timed_out"
            line = f":hourglass: No decision before the deadline ({_date_token(int(now.timestamp()), iso)})."
        else:
            decision = "approved" if ev.decision == "approve" else "rejected"
            icon = ":white_check_mark:" if decision == "approved" else ":x:"
            line = f"{icon} *{decision.capitalize()}* by <@{ev.user_id}> on {_date_token(int(now.timestamp()), iso)}"
            if ev.comment:
                line += f"\n> {ev.comment[:2500]}"
        final_blocks = [*request_blocks, {"type": "section", "text": {"type": "mrkdwn", "text": line}}]
        try:
            await workflow.execute_activity_method(
                SlackActivities.update_message,
                UpdateMessageInput(organization_id=inp.organization_id, connection=inp.connection, channel=channel,
                                   ts=ts, text=f"{inp.title}: {decision.replace('_', ' ')}", blocks=final_blocks),
                **SLACK_SEND.kwargs(),
            )
        except ActivityError as err:
            # The decision stands even if Slack refuses the edit; the caller still gets it.
            workflow.logger.warning("could not update the approval message: %s", _failure(err))
        return SlackApprovalResult(
            decision=decision,
            decided_by=ev.user_id if ev else None, decided_by_name=ev.user_name if ev else None,
            decided_at=iso if ev else None, comment=ev.comment if ev else None, channel=channel, ts=ts,
            reminders_sent=reminders, refused=refused,
        )


@workflow.defn(name="SlackStatusCommand", failure_exception_types=BAD_INPUT)
class SlackStatusCommand:
    """`/opensyte status`: a report of this workspace's connections (the gateway replies via response_url)."""

    @workflow.run
    async def run(self, inp: SlackCommandInput) -> SlackStatusReport:
        return await workflow.execute_activity_method(SlackActivities.status_report, inp, **LOOKUP.kwargs())


SLACK_WORKFLOWS: tuple[type, ...] = (SendSlackMessage, SlackApproval, SlackStatusCommand)
