"""WhatsAppConversation: one customer of one business number, fed by webhooks (signal-with-start).

Keeps the 24 h customer-service window, the opt-in state, OpenSyte's context, the replies waiting to be
sent, and the messages in (with their full content) and out (what was sent). Delivery facts — statuses,
errors, pricing, cost — belong to the store alone: the `view_with_status` update asks it through the
`whatsapp.message_timelines` activity (a query cannot run activities), so status webhooks signal nothing.
Signals record inbound messages (deduplicated: Meta redelivers), updates send replies and wait for the
customer's next message, the run loop does the sending. Continues as new before the history grows large
and ends after a configurable idle time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.whatsapp.activities import WhatsAppActivities
    from activities.whatsapp.messages import is_free_form, summary, validate
    from activities.whatsapp.models import (
        ContactLookupInput,
        ConversationEvents,
        ConversationInput,
        ConversationMessage,
        ConversationReply,
        ConversationReplyResult,
        ConversationResult,
        ConversationState,
        ConversationView,
        InboundMessage,
        MessageTimeline,
        MessageTimelinesInput,
        OutboundMessage,
        ReplySubscription,
        SendMessageInput,
        StatusStep,
        ViewRequest,
        WaitForReply,
        WaitForReplyResult,
    )
    from activities.whatsapp.spec import CUSTOMER_SERVICE_WINDOW_SECONDS
    from core.errors import ErrorClass, IntegrationError, error_from_details
    from core.policies import LOOKUP, WHATSAPP_SEND

SEEN_KEEP = 2000  # dedupe keys carried across continue-as-new (redeliveries come within days, not years)
MIN_HOLD = timedelta(seconds=1)


@dataclass
class _Outgoing:
    """A reply waiting for the run loop (the update handler waits for `result`)."""

    id: int
    message: OutboundMessage
    idempotency_key: str | None
    used_fallback: bool
    not_before: datetime | None = None
    result: ConversationReplyResult | None = None
    error: ApplicationError | None = None
    done: bool = False


@dataclass
class _Pending:
    items: list[_Outgoing] = field(default_factory=list)
    next_id: int = 0


@workflow.defn(name="WhatsAppConversation")
class WhatsAppConversation:
    @workflow.init
    def __init__(self, inp: ConversationInput) -> None:
        self.inp = inp
        state = inp.state or ConversationState(context=dict(inp.context))
        if inp.state is not None and inp.context:
            state.context = {**state.context, **inp.context}
        self.state = state
        self.messages: dict[str, ConversationMessage] = {m.message_id: m for m in state.messages}
        self.seen: dict[str, None] = dict.fromkeys(state.seen)
        self.outbox = _Pending()
        self.subscriptions: list[ReplySubscription] = []
        self.wake = False
        self.last_activity: datetime | None = None

    # ---- signals: record only ------------------------------------------------------------------
    @workflow.signal(name="events")
    def events(self, batch: ConversationEvents) -> None:
        """Inbound messages from the gateway; a redelivered one changes nothing."""
        for ev in batch.events:
            if ev.inbound is not None:  # statuses are the store's (older gateways still sent them)
                self._inbound(ev.inbound, ev.opt_out)
        self._touch()

    @workflow.signal(name="attach_context")
    def attach_context(self, context: dict[str, Any]) -> None:
        """OpenSyte context (contact id, deal id…) attached or updated by a starter."""
        self.state.context = {**self.state.context, **context}
        self._touch()

    @workflow.signal(name="subscribe_reply")
    def subscribe_reply(self, sub: ReplySubscription) -> None:
        """Another workflow wants a signal with the customer's next reply."""
        after = sub.after_seq if sub.after_seq is not None else self.state.seq
        self.subscriptions.append(sub.model_copy(update={"after_seq": after}))
        self._touch()

    # ---- queries ------------------------------------------------------------------------------
    @workflow.query(name="view")
    def view(self) -> ConversationView:
        closes = self._window_closes_at()
        return ConversationView(
            organization_id=self.inp.organization_id, connection=self.inp.connection,
            phone_number_id=self.inp.phone_number_id, wa_id=self.inp.wa_id, user_id=self.inp.user_id,
            profile_name=self.state.profile_name,
            window_open=self._window_open(), window_closes_at=closes, opted_in=self.state.opted_in,
            opted_out=self.state.opted_out, context=self.state.context,
            messages=sorted(self.messages.values(), key=lambda m: m.seq), seq=self.state.seq,
            subscriptions=len(self.subscriptions))

    # ---- updates ------------------------------------------------------------------------------
    @workflow.update  # named after the method: `name=` would type callers' results as coroutines
    async def send_reply(self, req: ConversationReply) -> ConversationReplyResult:
        """Send through the conversation: free-form inside the window, else the fallback template."""
        fallback = self._needs_fallback(req.message)
        message = OutboundMessage(type="template", template=self.inp.fallback_template) if fallback else req.message
        item = _Outgoing(id=self.outbox.next_id, message=message, idempotency_key=req.idempotency_key,
                         used_fallback=fallback)
        self.outbox.next_id += 1
        self.outbox.items.append(item)
        self._touch()
        await workflow.wait_condition(lambda: item.done)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    @send_reply.validator
    def _validate_reply(self, req: ConversationReply) -> None:
        """Rejected before entering history: bad content, opted-out customer, closed window."""
        try:
            validate(req.message)
        except IntegrationError as err:
            raise err.to_application_error() from None
        if self.state.opted_out:
            raise ApplicationError("the customer opted out of messages: nothing may be sent",
                                   {"code": "opted_out"}, type=ErrorClass.PERMANENT.value, non_retryable=True)
        if is_free_form(req.message) and not self._window_open() and self.inp.fallback_template is None:
            closes = self._window_closes_at()
            since = (f"it closed at {datetime.fromtimestamp(closes).isoformat()}Z" if closes
                     else "the customer has not written yet")
            raise ApplicationError(
                f"outside the 24-hour customer service window ({since}): a free-form reply cannot be sent; "
                "send an approved template, or start the conversation with a fallback_template",
                {"code": "window_closed"}, type=ErrorClass.PERMANENT.value, non_retryable=True)

    @workflow.update
    async def wait_for_reply(self, req: WaitForReply) -> WaitForReplyResult:
        """The customer's next message after `after_seq` (default: now), or timed_out."""
        after = req.after_seq if req.after_seq is not None else self.state.seq
        self._touch()
        try:
            await workflow.wait_condition(lambda: self._reply_after(after) is not None,
                                          timeout=timedelta(seconds=max(0.0, req.timeout_seconds)))
        except TimeoutError:
            return WaitForReplyResult(timed_out=True)
        return WaitForReplyResult(reply=self._reply_after(after))

    @workflow.update
    async def view_with_status(self, req: ViewRequest) -> ConversationView:
        """The view plus each outbound message's delivery status, timeline, error and cost from the store (their
        owner), and the messages other workflows sent this customer (SendWhatsAppMessage, bulk sends)."""
        found = await workflow.execute_activity_method(
            WhatsAppActivities.message_timelines,
            MessageTimelinesInput(organization_id=self.inp.organization_id, connection=self.inp.connection,
                                  phone_number_id=self.inp.phone_number_id, customer=self.inp.customer,
                                  limit=req.limit),
            **LOOKUP.kwargs())
        view = self.view()
        view.messages = _merge([m.model_copy(deep=True) for m in view.messages], found.messages)
        return view

    # ---- run: the work ------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ConversationInput) -> ConversationResult:
        self._touch()
        if not self.state.loaded:
            snap = await workflow.execute_activity_method(
                WhatsAppActivities.contact_snapshot,
                ContactLookupInput(organization_id=inp.organization_id, connection=inp.connection,
                                   phone_number_id=inp.phone_number_id, wa_id=inp.customer),
                **LOOKUP.kwargs())
            # Events that arrived meanwhile are newer than the snapshot: they win.
            self.state.opted_out = self.state.opted_out or snap.opted_out
            self.state.opted_in = (self.state.opted_in or snap.opted_in) and not self.state.opted_out
            if snap.last_inbound_at and (self.state.last_inbound_at or 0) < snap.last_inbound_at:
                self.state.last_inbound_at = snap.last_inbound_at
            self.state.profile_name = self.state.profile_name or snap.profile_name
            self.state.loaded = True
        idle = timedelta(seconds=inp.idle_timeout_seconds)
        while True:
            self.wake = False  # anything recorded from here on wakes the wait below
            ready = self._ready_outgoing()
            if ready is not None:
                await self._send(ready)
                continue
            await self._notify_subscribers()
            if self._history_too_long() and not self.outbox.items and workflow.all_handlers_finished():
                workflow.continue_as_new(self._next_input())
            now = workflow.now()
            assert self.last_activity is not None
            idle_left = self.last_activity + idle - now
            if idle_left <= timedelta(0) and not self.outbox.items:
                if workflow.all_handlers_finished():
                    return ConversationResult(reason="idle", messages=len(self.messages))
                # Idle, but someone still waits for a reply: no timer until that changes.
                await workflow.wait_condition(lambda: self.wake or workflow.all_handlers_finished())
                continue
            timeout = max(idle_left, timedelta(seconds=1))
            held = [i.not_before for i in self.outbox.items if i.not_before is not None]
            if held:
                timeout = min(timeout, max(min(held) - now, MIN_HOLD))
            closes = self._window_closes_at()
            # patched: conversations started before this change replay their recorded timers unchanged.
            if closes is not None and closes > now.timestamp() and workflow.patched("conversation-window-wake"):
                # Wake when the window closes: a query sees the time of the last workflow task, so without this
                # `view` would call the window open until something else happened.
                timeout = min(timeout, max(timedelta(seconds=closes - now.timestamp()), MIN_HOLD))
            try:
                await workflow.wait_condition(
                    lambda: self.wake or (self._history_too_long() and workflow.all_handlers_finished()),
                    timeout=timeout)
            except TimeoutError:
                pass

    async def _send(self, item: _Outgoing) -> None:
        try:
            res = await workflow.execute_activity_method(
                WhatsAppActivities.send_message,
                SendMessageInput(organization_id=self.inp.organization_id, connection=self.inp.connection,
                                 to=self.inp.customer, message=item.message, idempotency_key=item.idempotency_key,
                                 conversation_id=workflow.info().workflow_id),
                **WHATSAPP_SEND.kwargs(self._deadline(item.message)))
        except ActivityError as err:
            details = error_from_details(err) or {"message": str(err)}
            item.error = ApplicationError(f"reply not sent: {details.get('message')}", details,
                                          type=str(details.get("error_class") or ErrorClass.PERMANENT.value),
                                          non_retryable=True)
            self._finish(item)
            return
        if res.status == "held" and res.resume_at:
            # The portfolio's 24 h limit is full: hold the reply and send it when a slot frees.
            item.not_before = datetime.fromisoformat(res.resume_at)
            return
        if res.message_id:
            self._record_outbound(res.message_id, item.message, res.category)
        item.result = ConversationReplyResult(message_id=res.message_id, status=res.status,
                                              used_fallback_template=item.used_fallback, category=res.category)
        self._finish(item)

    def _finish(self, item: _Outgoing) -> None:
        item.done = True
        self.outbox.items.remove(item)

    def _ready_outgoing(self) -> _Outgoing | None:
        now = workflow.now()
        for item in self.outbox.items:
            if item.not_before is None or item.not_before <= now:
                return item
        return None

    async def _notify_subscribers(self) -> None:
        for sub in list(self.subscriptions):
            reply = self._reply_after(sub.after_seq or 0)
            if reply is None:
                continue
            self.subscriptions.remove(sub)
            try:
                await workflow.get_external_workflow_handle(sub.workflow_id).signal(sub.signal_name, reply)
            except Exception as exc:  # the subscriber is gone: nothing to tell
                workflow.logger.info("reply subscriber %s not signalled: %s", sub.workflow_id, exc)

    # ---- state ----------------------------------------------------------------------------------
    def _touch(self) -> None:
        self.wake = True
        self.last_activity = workflow.now()

    def _seen(self, key: str) -> bool:
        if key in self.seen:
            return True
        self.seen[key] = None
        if len(self.seen) > SEEN_KEEP * 2:
            for old in list(self.seen)[: len(self.seen) - SEEN_KEEP]:
                del self.seen[old]
        return False

    def _next_seq(self) -> int:
        self.state.seq += 1
        return self.state.seq

    def _inbound(self, m: InboundMessage, opt_out: bool) -> None:
        if self._seen(f"in:{m.message_id}"):
            return
        self.messages[m.message_id] = ConversationMessage(
            message_id=m.message_id, direction="in", type=m.type, text=m.text, at=m.timestamp, content=m.content,
            status="received", timeline=[StatusStep(status="received", at=m.timestamp)], seq=self._next_seq())
        if m.timestamp > (self.state.last_inbound_at or 0):
            self.state.last_inbound_at = m.timestamp
        if m.profile_name:
            self.state.profile_name = m.profile_name
        if opt_out:
            self.state.opted_out, self.state.opted_in = True, False
        self._trim()

    def _record_outbound(self, message_id: str, message: OutboundMessage, category: str | None) -> None:
        msg = self.messages.get(message_id)
        if msg is None:
            msg = ConversationMessage(message_id=message_id, direction="out", at=int(workflow.now().timestamp()),
                                      seq=self._next_seq())
            self.messages[message_id] = msg
            self._trim()
        msg.type, msg.text = message.type, summary(message)
        msg.category = category or msg.category
        msg.template = message.template.name if message.template else None


    def _trim(self) -> None:
        excess = len(self.messages) - max(1, self.inp.keep_messages)
        if excess > 0:
            for key in sorted(self.messages, key=lambda k: self.messages[k].seq)[:excess]:
                del self.messages[key]

    def _window_closes_at(self) -> int | None:
        last = self.state.last_inbound_at
        return last + CUSTOMER_SERVICE_WINDOW_SECONDS if last else None

    def _window_open(self) -> bool:
        closes = self._window_closes_at()
        return closes is not None and workflow.now().timestamp() < closes

    def _deadline(self, message: OutboundMessage) -> timedelta | None:
        """A free-form reply cannot outlive the customer service window: it is retried through an outage only
        until the window closes (a template may wait the usual hours)."""
        closes = self._window_closes_at()
        if not is_free_form(message) or closes is None:
            return None
        left = timedelta(seconds=closes - workflow.now().timestamp())
        return min(left, WHATSAPP_SEND.deadline)

    def _needs_fallback(self, message: OutboundMessage) -> bool:
        return is_free_form(message) and not self._window_open() and self.inp.fallback_template is not None

    def _reply_after(self, seq: int) -> ConversationMessage | None:
        found = [m for m in self.messages.values() if m.direction == "in" and m.seq > seq]
        return min(found, key=lambda m: m.seq) if found else None

    def _history_too_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self.inp.history_limit

    def _next_input(self) -> ConversationInput:
        self.state.messages = sorted(self.messages.values(), key=lambda m: m.seq)
        self.state.seen = list(self.seen)[-SEEN_KEEP:]
        return self.inp.model_copy(update={"state": self.state, "context": {}})


def _merge(messages: list[ConversationMessage], timelines: list[MessageTimeline]) -> list[ConversationMessage]:
    """The conversation's messages (in its order) with the store's delivery facts; messages the conversation
    never saw (sent by other workflows) are placed by time."""
    known = {m.message_id: m for m in messages}
    extra: list[ConversationMessage] = []
    for t in timelines:
        m = known.get(t.message_id)
        if m is None:
            if t.direction == "in":
                continue  # older than what the conversation keeps
            m = ConversationMessage(message_id=t.message_id, direction="out", type=t.type or "text", at=t.at,
                                    text=f"[template {t.template}]" if t.template else None, template=t.template,
                                    category=t.category)
            extra.append(m)
        if m.direction == "out":
            m.status, m.timeline, m.error = t.status, list(t.timeline), t.error
            m.cost, m.currency = t.cost, t.currency
            m.category = m.category or t.pricing_category or t.category
    out: list[ConversationMessage] = []
    pending = sorted(extra, key=lambda m: m.at)
    for m in messages:
        while pending and pending[0].at < m.at:
            out.append(pending.pop(0))
        out.append(m)
    return out + pending
