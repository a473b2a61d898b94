"""WhatsApp workflows: send any message type to one or many recipients."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.whatsapp.activities import WhatsAppActivities
    from activities.whatsapp.messages import validate
    from activities.whatsapp.models import (
        OutboundMessage,
        SendMessageInput,
        SendProgress,
        SendResult,
        SendWhatsAppMessageInput,
        SendWhatsAppMessageResult,
    )
    from activities.whatsapp.opensyte import normalize
    from core.errors import IntegrationError, error_from_details
    from core.policies import WHATSAPP_SEND, deadline_of
    from core.visibility import raise_if_all_failed

# A held send looks again no sooner than this (the store's resume time is a lower bound).
MIN_HOLD = timedelta(seconds=1)


@workflow.defn(name="SendWhatsAppMessage")
class SendWhatsAppMessage:
    """Send one message to each recipient; one failing recipient does not fail the others.

    Takes OpenSyte's WhatsAppAction fields or this service's own; bad content fails the workflow at
    once with a PermanentError naming the field and the limit. A recipient beyond the portfolio's 24 h
    messaging limit is held and sent when a slot frees (durable timer), unless `hold_when_limited` is off.
    """

    def __init__(self) -> None:
        self.progress = SendProgress()

    @workflow.query(name="progress")
    def get_progress(self) -> SendProgress:
        """Recipients done so far (`osi whatsapp send` draws its progress bar from this)."""
        return self.progress

    @workflow.run
    async def run(self, inp: SendWhatsAppMessageInput) -> SendWhatsAppMessageResult:
        try:
            recipients, msg = normalize(inp)
            validate(msg)
        except IntegrationError as err:
            raise err.to_application_error() from None
        self.progress.total = len(recipients)
        results = list(await asyncio.gather(*(self._one(inp, to, msg) for to in recipients)))
        failed = sum(1 for r in results if r.status == "failed")
        held = sum(1 for r in results if r.status == "held")
        result = SendWhatsAppMessageResult(results=results, sent=len(results) - failed - held, failed=failed,
                                           held=held)
        self.progress.state = "completed"
        # Nobody reached: the workflow ends Failed with the shared error class (each outcome in the details).
        raise_if_all_failed(reached=result.sent + held, failed=failed, errors=[r.error for r in results],
                            what="SendWhatsAppMessage: no recipient reached", result=result)
        return result

    async def _one(self, inp: SendWhatsAppMessageInput, to: str, msg: OutboundMessage) -> SendResult:
        while True:
            try:
                res = await workflow.execute_activity_method(
                    WhatsAppActivities.send_message,
                    SendMessageInput(organization_id=inp.organization_id, connection=inp.connection, to=to,
                                     message=msg, idempotency_key=inp.idempotency_key),
                    **WHATSAPP_SEND.kwargs(deadline_of(inp.deliver_within)),
                )
            except ActivityError as err:
                self.progress.failed += 1
                return SendResult(to=to, status="failed", error=error_from_details(err) or {"message": str(err)})
            if res.status != "held" or not inp.hold_when_limited or not res.resume_at:
                if res.status == "held":
                    self.progress.held += 1
                else:
                    self.progress.sent += 1
                return res
            self.progress.waiting += 1
            wait = datetime.fromisoformat(res.resume_at) - workflow.now()
            await workflow.sleep(max(wait, MIN_HOLD))
            self.progress.waiting -= 1

