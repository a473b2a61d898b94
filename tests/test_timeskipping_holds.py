"""Sends held by the portfolio's 24 h messaging limit, on Temporal's time-skipping server: held recipients of a
bulk template send or a SendWhatsAppMessage wait out the real window on a durable timer and are sent then —
never dropped, never failed by the send's own deadline — while progress reports them held / waiting."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.whatsapp.models import (
    BulkBatchInput,
    BulkBatchResult,
    BulkOutcome,
    BulkProgress,
    BulkRecipient,
    BulkSendWhatsAppTemplateInput,
    BulkSendWhatsAppTemplateResult,
    SendMessageInput,
    SendProgress,
    SendResult,
    SendWhatsAppMessageInput,
    SendWhatsAppMessageResult,
    Template,
)
from tests.test_timeskipping_slack import hours
from workflows.whatsapp import SendWhatsAppMessage
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate

WINDOW = timedelta(hours=24)


@dataclass
class FakePortfolio:
    """`whatsapp.send_template_batch` as a stand-in under the real name: a portfolio that may start `limit`
    conversations per moving 24 h window. Like the real activity, a recipient that finds it full comes back
    `held` with `resume_at` (when the oldest counted one leaves the window), an accepted recipient is never sent
    again, and a batch sent with `settle_only` (the send's deadline passed) fails whoever is not accepted yet."""

    limit: int
    sent_at: dict[int | str, datetime] = field(default_factory=dict)
    batches: list[BulkBatchInput] = field(default_factory=list)
    tries: list[str] = field(default_factory=list)

    def take(self, who: int | str, now: datetime) -> datetime | None:
        """A slot for `who` (None), or when the oldest counted conversation leaves the window."""
        counted = sorted(t for t in self.sent_at.values() if t > now - WINDOW)
        if len(counted) >= self.limit:
            return counted[0] + WINDOW
        self.sent_at[who] = now
        return None

    @activity.defn(name="whatsapp.send_message")
    async def send_message(self, inp: SendMessageInput) -> SendResult:
        self.tries.append(inp.to)
        if inp.to not in self.sent_at and (resume := self.take(inp.to, activity.info().current_attempt_scheduled_time)):
            return SendResult(to=inp.to, status="held", resume_at=resume.isoformat())
        return SendResult(to=inp.to, status="accepted", message_id=f"wamid.{inp.to}")

    @activity.defn(name="whatsapp.send_template_batch")
    async def send_template_batch(self, inp: BulkBatchInput) -> BulkBatchResult:
        self.batches.append(inp)
        now = activity.info().current_attempt_scheduled_time
        outcomes = []
        for idx in inp.indices:
            if idx in self.sent_at:
                outcomes.append(BulkOutcome(index=idx, status="sent", message_id=f"wamid.{idx}"))
            elif inp.settle_only:
                outcomes.append(BulkOutcome(index=idx, status="failed", code="deadline_exceeded"))
            elif (resume := self.take(idx, now)) is None:
                outcomes.append(BulkOutcome(index=idx, status="sent", message_id=f"wamid.{idx}"))
            else:
                outcomes.append(BulkOutcome(index=idx, status="held", code="messaging_limit",
                                            resume_at=resume.isoformat()))
        return BulkBatchResult(outcomes=outcomes)


async def poll_progress(env: WorkflowEnvironment, handle: Any, state: str) -> BulkProgress:
    """The progress once it reaches `state` (queries do not move the test server's clock)."""
    for _ in range(500):
        progress: BulkProgress = await handle.query(BulkSendWhatsAppTemplate.get_progress)
        if progress.state == state:
            return progress
        await env.sleep(timedelta(milliseconds=10))
    raise AssertionError(f"the bulk send never reached {state!r} (last: {progress})")


async def held_send(env: WorkflowEnvironment, fake: FakePortfolio, recipients: int, **kw: Any
                    ) -> tuple[BulkProgress, BulkSendWhatsAppTemplateResult]:
    queue = f"ts-bulk-{uuid.uuid4().hex[:6]}"
    async with Worker(env.client, task_queue=queue, workflows=[BulkSendWhatsAppTemplate],
                      activities=[fake.send_template_batch]):
        handle = await env.client.start_workflow(
            BulkSendWhatsAppTemplate.run, BulkSendWhatsAppTemplateInput(
                organization_id="org", template_name="greeting",
                recipients=[BulkRecipient(to=f"1650555{4000 + i}", body=["A"]) for i in range(recipients)], **kw),
            id=f"bulk-{uuid.uuid4().hex}", task_queue=queue, result_type=BulkSendWhatsAppTemplateResult)
        held = await poll_progress(env, handle, "held")
        return held, await handle.result()  # waiting on the result skips the test server through the window


async def test_held_recipients_are_sent_when_the_24_hour_window_frees_their_slots(time_env) -> None:
    fake = FakePortfolio(limit=3)
    held, res = await held_send(time_env, fake, 5, batch_size=5, deliver_within=2 * 86_400)
    assert (held.sent, held.held, held.pending) == (3, 2, 0)
    assert (res.state, res.sent, res.held, res.failed, res.cancelled) == ("completed", 5, 0, 0, 0)
    first = min(fake.sent_at.values())
    assert sorted(hours(at - first) for at in fake.sent_at.values()) == [0, 0, 0, 24.0, 24.0]
    assert len(fake.batches) == 2  # one try, then one when the slots free: no polling while held


async def test_a_hold_longer_than_the_default_deadline_still_sends(time_env) -> None:
    """The default `deliver_within` (12 h) is for provider outages; the messaging limit holds, never fails a
    send (docs/whatsapp.md, Rate limits), even when the slot frees after the deadline."""
    fake = FakePortfolio(limit=2)
    held, res = await held_send(time_env, fake, 4, batch_size=2)
    assert (held.sent, held.held) == (2, 2)
    assert (res.state, res.sent, res.failed) == ("completed", 4, 0), res.failed_by_error
    first = min(fake.sent_at.values())
    assert sorted(hours(at - first) for at in fake.sent_at.values()) == [0, 0, 24.0, 24.0]


async def test_a_single_send_holds_a_recipient_across_the_window_and_sends_it_then(time_env) -> None:
    fake, queue = FakePortfolio(limit=2), f"ts-send-{uuid.uuid4().hex[:6]}"
    customers = ["16505554101", "16505554102", "16505554103"]
    async with Worker(time_env.client, task_queue=queue, workflows=[SendWhatsAppMessage],
                      activities=[fake.send_message]):
        handle = await time_env.client.start_workflow(
            SendWhatsAppMessage.run, SendWhatsAppMessageInput(
                organization_id="org", to=customers, type="template", template=Template(name="hello_world")),
            id=f"send-{uuid.uuid4().hex}", task_queue=queue, result_type=SendWhatsAppMessageResult)
        for _ in range(500):
            progress: SendProgress = await handle.query(SendWhatsAppMessage.get_progress)
            if progress.waiting:
                break
            await time_env.sleep(timedelta(milliseconds=10))
        assert (progress.sent, progress.waiting, progress.held) == (2, 1, 0)
        res = await handle.result()
    assert [r.status for r in res.results] == ["accepted"] * 3 and (res.sent, res.held) == (3, 0)
    tried = Counter(fake.tries)  # the held one was tried again only when its slot freed, the others once
    (again,) = [to for to, n in tried.items() if n == 2]
    assert sorted(tried.values()) == [1, 1, 2] and set(tried) == set(customers)
    first = min(fake.sent_at.values())
    assert hours(fake.sent_at[again] - first) == 24.0
    assert sorted(hours(at - first) for at in fake.sent_at.values()) == [0, 0, 24.0]
