"""SlackApproval's clock on Temporal's time-skipping server: reminders every interval up to the maximum, none at
or after the deadline, a decision stopping them, the 24 h deadline timing out — real intervals, in seconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.events.models import EmitInput, EmitResult
from activities.slack.models import (
    EphemeralInput,
    EphemeralResult,
    MembersInput,
    MembersResult,
    MessageRef,
    PostMessageInput,
    SlackApprovalInput,
    SlackApprovalResult,
    SlackInteraction,
    UpdateMessageInput,
)
from workflows.slack import SlackApproval

CHANNEL, ANN, BOB, TEAM, TS = "C0APPROVE1", "U0ANN00001", "U0BOB00001", "T0TEAM0001", "1700000000.000100"


@dataclass
class FakeSlack:
    """The activities an approval calls, as stand-ins under the real names; each call recorded with the test
    server's time it was scheduled at."""

    posts: list[tuple[datetime, PostMessageInput]] = field(default_factory=list)
    updates: list[tuple[datetime, UpdateMessageInput]] = field(default_factory=list)
    ephemerals: list[EphemeralInput] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @activity.defn(name="slack.post_message")
    async def post_message(self, inp: PostMessageInput) -> MessageRef:
        self.posts.append((activity.info().current_attempt_scheduled_time, inp))
        ts = TS if inp.thread_ts is None else f"1700000000.{len(self.posts):06d}"
        return MessageRef(channel=inp.channel or CHANNEL, ts=ts, thread_ts=inp.thread_ts, team_id=TEAM)

    @activity.defn(name="slack.update_message")
    async def update_message(self, inp: UpdateMessageInput) -> MessageRef:
        self.updates.append((activity.info().current_attempt_scheduled_time, inp))
        return MessageRef(channel=inp.channel, ts=inp.ts, team_id=TEAM)

    @activity.defn(name="slack.post_ephemeral")
    async def post_ephemeral(self, inp: EphemeralInput) -> EphemeralResult:
        self.ephemerals.append(inp)
        return EphemeralResult(message_ts="1700000000.999999")

    @activity.defn(name="slack.conversation_members")
    async def conversation_members(self, inp: MembersInput) -> MembersResult:
        return MembersResult(channel=inp.channel, members=[])

    @activity.defn(name="events.emit")
    async def emit(self, inp: EmitInput) -> EmitResult:
        self.events += [e.type for e in inp.events]
        return EmitResult()

    def all(self) -> list[Any]:
        return [self.post_message, self.update_message, self.post_ephemeral, self.conversation_members, self.emit]

    def reminders(self) -> list[tuple[datetime, PostMessageInput]]:
        return [(at, p) for at, p in self.posts if p.thread_ts == TS]


def hours(span: timedelta) -> float:
    """A span on the test server's clock in hours, to the minute (each activity is scheduled a few ms later)."""
    return round(span / timedelta(minutes=1)) / 60


def click(user: str, n: int, decision: str | None = "approve") -> SlackInteraction:
    return SlackInteraction(kind="block_actions", team_id=TEAM, user_id=user, channel_id=CHANNEL,
                            action_ts=f"1700000001.{n:06d}", action_id=f"osi.{decision or 'none'}",
                            decision=decision)  # type: ignore[arg-type]


async def run_approval(env: WorkflowEnvironment, fake: FakeSlack, **kw: Any) -> tuple[Any, str]:
    queue = f"ts-slack-{uuid.uuid4().hex[:6]}"
    worker = Worker(env.client, task_queue=queue, workflows=[SlackApproval], activities=fake.all())
    await worker.__aenter__()
    handle = await env.client.start_workflow(
        SlackApproval.run, SlackApprovalInput(organization_id="org", channel=CHANNEL, title="Approve 15% discount",
                                              approvers=[ANN], **kw),
        id=f"approval-{uuid.uuid4().hex}", task_queue=queue, result_type=SlackApprovalResult)
    handle.worker = worker  # type: ignore[attr-defined]
    return handle, queue


async def finish(handle: Any) -> SlackApprovalResult:
    try:
        return await handle.result()  # waiting on the result lets the test server skip to the next timer
    finally:
        await handle.worker.__aexit__(None, None, None)


async def test_reminders_every_interval_up_to_the_maximum_then_the_24_hour_deadline(time_env) -> None:
    fake = FakeSlack()
    handle, _ = await run_approval(time_env, fake, reminder_seconds=4 * 3600, max_reminders=3)  # 24 h default
    result = await finish(handle)
    started = fake.posts[0][0]
    assert result.decision == "timed_out" and result.decided_by is None and result.reminders_sent == 3
    reminders = fake.reminders()
    assert [hours(at - started) for at, _ in reminders] == [4.0, 8.0, 12.0]
    assert [(p.text or "").split(":")[2].strip() for _, p in reminders] == ["Reminder 1", "Reminder 2", "Reminder 3"]
    assert all(f"<@{ANN}>" in (p.text or "") for _, p in reminders)
    (at, update), = fake.updates
    assert hours(at - started) == 24.0  # the message is closed at the deadline
    assert update.ts == TS and "timed out" in (update.text or "")
    assert "No decision before the deadline" in str(update.blocks[-1])
    assert fake.events == ["slack.approval.decided"]


async def test_no_reminder_at_or_after_the_deadline(time_env) -> None:
    fake = FakeSlack()
    handle, _ = await run_approval(time_env, fake, timeout_seconds=8 * 3600, reminder_seconds=4 * 3600,
                                   max_reminders=5)
    result = await finish(handle)
    assert result.decision == "timed_out" and result.reminders_sent == 1  # at 4 h; the 8 h one is the deadline
    assert len(fake.reminders()) == 1


async def test_a_decision_after_the_first_reminder_stops_the_rest(time_env) -> None:
    fake = FakeSlack()
    handle, _ = await run_approval(time_env, fake, timeout_seconds=48 * 3600, reminder_seconds=6 * 3600,
                                   max_reminders=5)
    await time_env.sleep(timedelta(hours=7))
    await handle.signal(SlackApproval.slack_interaction, click(BOB, 1))  # not an approver: refused, no decision
    await handle.signal(SlackApproval.slack_interaction, click(ANN, 2))
    result = await finish(handle)
    started = fake.posts[0][0]
    assert result.decision == "approved" and result.decided_by == ANN and result.reminders_sent == 1
    assert result.refused == [BOB] and [e.user for e in fake.ephemerals] == [BOB]
    assert result.decided_at is not None
    assert hours(datetime.fromisoformat(result.decided_at) - started) == 7.0  # decided when clicked
    assert len(fake.reminders()) == 1 and len(fake.updates) == 1
    assert "Approved" in str(fake.updates[0][1].blocks[-1])


async def test_without_reminders_only_the_deadline_wakes_it(time_env) -> None:
    fake = FakeSlack()
    handle, _ = await run_approval(time_env, fake, timeout_seconds=30 * 86_400)  # the longest allowed: 30 days
    result = await finish(handle)
    assert result.decision == "timed_out" and result.reminders_sent == 0 and fake.reminders() == []
    assert hours(fake.updates[0][0] - fake.posts[0][0]) == 30 * 24.0
