"""Workflow logic on Temporal's time-skipping test server, with stand-in activities registered under the real
activity names: the conversation's idle end and 24-hour window, a held reply, continue-as-new, the store's
timelines merged into the view, and event delivery retried for hours (and given up after days) — in seconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.events.models import (
    DeliverEventInput,
    DeliverEventResult,
    DeliveryInput,
    DeliveryResult,
    GiveUpInput,
    PendingEvent,
    PendingInput,
    PendingResult,
)
from activities.whatsapp.models import (
    ContactLookupInput,
    ContactSnapshot,
    ConversationEvent,
    ConversationEvents,
    ConversationInput,
    ConversationReply,
    ConversationResult,
    ConversationView,
    InboundMessage,
    MessageTimeline,
    MessageTimelines,
    MessageTimelinesInput,
    OutboundMessage,
    SendMessageInput,
    SendResult,
    StatusStep,
    Template,
    ViewRequest,
)
from tests.test_whatsapp_support import eventually
from workflows.events import EventDelivery
from workflows.whatsapp_conversation import WhatsAppConversation

HOUR = 3600


@pytest.fixture
def env(time_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """One test server per test (conftest's `time_env`): a workflow left running cannot move another's clock."""
    return time_env


@dataclass
class FakeWhatsApp:
    """The WhatsApp activities a conversation calls, as stand-ins that record what they were asked."""

    sends: list[SendMessageInput] = field(default_factory=list)
    sent_at: list[datetime] = field(default_factory=list)
    hold_first: timedelta | None = None
    timelines: list[MessageTimeline] = field(default_factory=list)

    @activity.defn(name="whatsapp.contact_snapshot")
    async def contact_snapshot(self, inp: ContactLookupInput) -> ContactSnapshot:
        return ContactSnapshot(opted_in=True)

    @activity.defn(name="whatsapp.send_message")
    async def send_message(self, inp: SendMessageInput) -> SendResult:
        self.sends.append(inp)
        self.sent_at.append(activity.info().current_attempt_scheduled_time)
        if self.hold_first is not None and len(self.sends) == 1:
            # The portfolio's 24 h messaging limit is full: Meta frees a slot later (times are the test server's).
            resume = activity.info().current_attempt_scheduled_time + self.hold_first
            return SendResult(to=inp.to, status="held", resume_at=resume.isoformat())
        return SendResult(to=inp.to, status="accepted", message_id=f"wamid.out{len(self.sends)}", category="service")

    @activity.defn(name="whatsapp.message_timelines")
    async def message_timelines(self, inp: MessageTimelinesInput) -> MessageTimelines:
        return MessageTimelines(messages=self.timelines)

    def all(self) -> list[Any]:
        return [self.contact_snapshot, self.send_message, self.message_timelines]


def inbound(env: WorkflowEnvironment, text: str, n: int, customer: str = "16505551234") -> ConversationEvents:
    now = int(env_time(env).timestamp())
    return ConversationEvents(events=[ConversationEvent(inbound=InboundMessage(
        message_id=f"wamid.in{n}", customer=customer, wa_id=customer, phone_number_id="106540352242922",
        timestamp=now, type="text", text=text, profile_name="Sheena Nelson"))])


_clock: dict[int, datetime] = {}


def env_time(env: WorkflowEnvironment) -> datetime:
    return _clock[id(env)]


async def tick(env: WorkflowEnvironment) -> None:
    _clock[id(env)] = await env.get_current_time()


async def start(env: WorkflowEnvironment, queue: str, **kw: Any) -> Any:
    return await env.client.start_workflow(
        WhatsAppConversation.run, ConversationInput(organization_id="org", phone_number_id="106540352242922",
                                                    wa_id="16505551234", **kw),
        id=f"conv-{uuid.uuid4().hex}", task_queue=queue, result_type=ConversationResult)


# ---- the conversation ---------------------------------------------------------------------------------------
async def test_an_idle_conversation_ends_after_its_idle_time(env) -> None:
    queue, fake = f"ts-{uuid.uuid4().hex[:6]}", FakeWhatsApp()
    async with Worker(env.client, task_queue=queue, workflows=[WhatsAppConversation], activities=fake.all()):
        handle = await start(env, queue, idle_timeout_seconds=72 * HOUR)
        await tick(env)
        await handle.signal(WhatsAppConversation.events, inbound(env, "hi", 1))
        result = await handle.result()  # the test server skips the 72 hours
        desc = await handle.describe()
    assert result.reason == "idle" and result.messages == 1
    assert desc.close_time is not None
    assert timedelta(hours=72) <= desc.close_time - desc.start_time < timedelta(hours=73)


async def test_the_24_hour_window_closes_and_the_fallback_template_goes_instead(env) -> None:
    queue, fake = f"ts-{uuid.uuid4().hex[:6]}", FakeWhatsApp()
    async with Worker(env.client, task_queue=queue, workflows=[WhatsAppConversation], activities=fake.all()):
        plain = await start(env, queue)
        with_fallback = await start(env, queue, fallback_template=Template(name="hello_world"))
        await tick(env)
        for h in (plain, with_fallback):
            await h.signal(WhatsAppConversation.events, inbound(env, "hello", 1))
        free = ConversationReply(message=OutboundMessage(type="text", text="Hi!"))
        ok = await plain.execute_update(WhatsAppConversation.send_reply, free)
        assert ok.status == "accepted" and not ok.used_fallback_template
        view: ConversationView = await plain.query(WhatsAppConversation.view)
        assert view.window_open and view.window_closes_at == int(env_time(env).timestamp()) + 24 * HOUR
        await env.sleep(timedelta(hours=24, minutes=1))
        closed: ConversationView = await plain.query(WhatsAppConversation.view)
        assert not closed.window_open
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await plain.execute_update(WhatsAppConversation.send_reply, free)
        assert "outside the 24-hour customer service window" in str(refused.value.cause)
        fallback = await with_fallback.execute_update(WhatsAppConversation.send_reply, free)
        assert fallback.used_fallback_template
    assert [s.message.type for s in fake.sends] == ["text", "template"]
    assert fake.sends[-1].message.template.name == "hello_world" and fake.sends[0].to == "16505551234"


async def test_a_held_reply_is_sent_when_the_limit_frees_a_slot(env) -> None:
    queue, fake = f"ts-{uuid.uuid4().hex[:6]}", FakeWhatsApp(hold_first=timedelta(hours=2))
    async with Worker(env.client, task_queue=queue, workflows=[WhatsAppConversation], activities=fake.all()):
        handle = await start(env, queue, fallback_template=Template(name="hello_world"))
        update = await handle.start_update(WhatsAppConversation.send_reply, ConversationReply(
            message=OutboundMessage(type="template", template=Template(name="order_update"))),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await env.sleep(timedelta(hours=2, minutes=1))  # an update's caller does not skip time; this does
        res = await update.result()
    assert res.status == "accepted" and res.message_id == "wamid.out2" and len(fake.sends) == 2
    held = fake.sent_at[1] - fake.sent_at[0]
    assert timedelta(hours=2) <= held < timedelta(hours=2, minutes=1)  # held (durably), then sent: never dropped


async def test_continue_as_new_keeps_messages_context_and_dedupe(env) -> None:
    queue, fake = f"ts-{uuid.uuid4().hex[:6]}", FakeWhatsApp()
    async with Worker(env.client, task_queue=queue, workflows=[WhatsAppConversation], activities=fake.all()):
        handle = await start(env, queue, history_limit=30, context={"deal_id": "d1"})
        first = (await handle.describe()).run_id
        await tick(env)
        # 30 signals are 30 history events however the worker batches them into workflow tasks: past the limit.
        for i in range(30):
            await handle.signal(WhatsAppConversation.events, inbound(env, f"message {i}", i))
        await handle.signal(WhatsAppConversation.events, inbound(env, "message 0", 0))  # Meta redelivers
        latest = env.client.get_workflow_handle(handle.id)
        now_run = await eventually(lambda: _run_id(latest), lambda run: run != first, tries=1200)
        view: ConversationView = await latest.query(WhatsAppConversation.view)
    assert now_run != first, "continued as new"
    assert [m.text for m in view.messages] == [f"message {i}" for i in range(30)] and view.seq == 30
    assert view.context == {"deal_id": "d1"} and view.window_open


async def _run_id(handle: Any) -> str:
    return str((await handle.describe()).run_id)


async def test_the_view_with_status_asks_the_store(env) -> None:
    queue = f"ts-{uuid.uuid4().hex[:6]}"
    fake = FakeWhatsApp(timelines=[
        MessageTimeline(message_id="wamid.bulk1", direction="out", type="template", template="spring_promo",
                        category="marketing", status="read", at=1, timeline=[
                            StatusStep(status="accepted", at=1), StatusStep(status="read", at=5)]),
        MessageTimeline(message_id="wamid.out1", direction="out", type="text", status="delivered", cost=0.0,
                        currency="USD", at=10**10, timeline=[StatusStep(status="accepted", at=10**10),
                                                             StatusStep(status="delivered", at=10**10 + 1)])])
    async with Worker(env.client, task_queue=queue, workflows=[WhatsAppConversation], activities=fake.all()):
        handle = await start(env, queue)
        await tick(env)
        await handle.signal(WhatsAppConversation.events, inbound(env, "hello", 1))
        await handle.execute_update(WhatsAppConversation.send_reply, ConversationReply(
            message=OutboundMessage(type="text", text="Hi!")))
        plain: ConversationView = await handle.query(WhatsAppConversation.view)
        full: ConversationView = await handle.execute_update(WhatsAppConversation.view_with_status, ViewRequest())
    assert [(m.message_id, m.status) for m in plain.messages] == [("wamid.in1", "received"), ("wamid.out1", None)]
    assert [(m.message_id, m.status) for m in full.messages] == [
        ("wamid.bulk1", "read"), ("wamid.in1", "received"), ("wamid.out1", "delivered")]
    assert [s.status for s in full.messages[-1].timeline] == ["accepted", "delivered"]
    assert full.messages[0].text == "[template spring_promo]" and full.messages[-1].text == "Hi!"


# ---- event delivery -------------------------------------------------------------------------------------------
@dataclass
class FakeOutbox:
    """The events activities as stand-ins: a receiver that is down until `down_for` after the first attempt."""

    rows: list[int]
    down_for: timedelta
    delivered: list[int] = field(default_factory=list)
    delivered_at: list[datetime] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    gave_up: list[int] = field(default_factory=list)
    first_attempt: datetime | None = None

    @activity.defn(name="events.pending")
    async def pending(self, inp: PendingInput) -> PendingResult:
        todo = [r for r in self.rows if r not in self.delivered and r not in self.gave_up]
        return PendingResult(subscription_exists=True, events=[
            PendingEvent(row_id=r, event_id=f"evt_{r}", type="ping") for r in todo[:inp.limit]])

    @activity.defn(name="events.deliver")
    async def deliver(self, inp: DeliverEventInput) -> DeliverEventResult:
        now = activity.info().current_attempt_scheduled_time
        self.first_attempt = self.first_attempt or now
        self.attempts[inp.row_id] = self.attempts.get(inp.row_id, 0) + 1
        if now - self.first_attempt < self.down_for:
            raise ApplicationError("receiver answered HTTP 503", {"error_class": "TemporaryError", "code": 503},
                                   type="TemporaryError")
        self.delivered.append(inp.row_id)
        self.delivered_at.append(now)
        return DeliverEventResult(status="delivered", status_code=200, attempts=self.attempts[inp.row_id])

    @activity.defn(name="events.give_up")
    async def give_up(self, inp: GiveUpInput) -> bool:
        self.gave_up.append(inp.row_id)
        return True

    def all(self) -> list[Any]:
        return [self.pending, self.deliver, self.give_up]


async def test_events_are_retried_for_hours_in_order(env) -> None:
    queue, outbox = f"ts-{uuid.uuid4().hex[:6]}", FakeOutbox(rows=[1, 2, 3], down_for=timedelta(hours=5))
    async with Worker(env.client, task_queue=queue, workflows=[EventDelivery], activities=outbox.all()):
        result = await env.client.execute_workflow(
            EventDelivery.run, DeliveryInput(subscription_id="sub", idle_seconds=60), id=f"ev-{uuid.uuid4().hex}",
            task_queue=queue, result_type=DeliveryResult)
    assert result == DeliveryResult(reason="idle", delivered=3, failed=0)
    assert outbox.delivered == [1, 2, 3] and outbox.attempts[1] > 3 and outbox.attempts[2] == 1
    assert outbox.first_attempt is not None
    # The receiver was down for hours: retried with backoff (at most an hour apart), nothing lost.
    assert timedelta(hours=5) <= outbox.delivered_at[0] - outbox.first_attempt < timedelta(hours=7)


async def test_an_event_is_given_up_after_days_and_the_next_one_goes(env) -> None:
    queue, outbox = f"ts-{uuid.uuid4().hex[:6]}", FakeOutbox(rows=[1, 2], down_for=timedelta(days=4))
    async with Worker(env.client, task_queue=queue, workflows=[EventDelivery], activities=outbox.all()):
        result = await env.client.execute_workflow(
            EventDelivery.run, DeliveryInput(subscription_id="sub", idle_seconds=60,
                                             give_up_after_seconds=3 * 86400),
            id=f"ev-{uuid.uuid4().hex}", task_queue=queue, result_type=DeliveryResult)
    assert result.failed == 1 and result.delivered == 1
    assert outbox.gave_up == [1] and outbox.delivered == [2]
