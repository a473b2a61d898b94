"""A bulk template send held by the portfolio's 24 h messaging limit, on Temporal's time-skipping server: the
held recipients wait out the real window on a durable timer and are sent then — never dropped, never failed by
the send's own deadline — while progress reports `held`."""

from __future__ import annotations

import uuid
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
)
from tests.test_timeskipping_slack import hours
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate

WINDOW = timedelta(hours=24)


@dataclass
class FakePortfolio:
    """`whatsapp.send_template_batch` as a stand-in under the real name: a portfolio that may start `limit`
    conversations per moving 24 h window. Like the real activity, a recipient that finds it full comes back
    `held` with `resume_at` (when the oldest counted one leaves the window), an accepted recipient is never sent
    again, and a batch sent with `settle_only` (the send's deadline passed) fails whoever is not accepted yet."""

    limit: int
    sent_at: dict[int, datetime] = field(default_factory=dict)
    batches: list[BulkBatchInput] = field(default_factory=list)

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
            elif len(counted := sorted(t for t in self.sent_at.values() if t > now - WINDOW)) < self.limit:
                self.sent_at[idx] = now
                outcomes.append(BulkOutcome(index=idx, status="sent", message_id=f"wamid.{idx}"))
            else:
                outcomes.append(BulkOutcome(index=idx, status="held", code="messaging_limit",
                                            resume_at=(counted[0] + WINDOW).isoformat()))
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
