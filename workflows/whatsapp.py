"""WhatsApp workflows: send to one or many recipients."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.errors import error_from_details
    from activities.policies import SEND
    from activities.whatsapp.activities import WhatsAppActivities
    from activities.whatsapp.models import (
        SendResult,
        SendTextInput,
        SendWhatsAppMessageInput,
        SendWhatsAppMessageResult,
    )


@workflow.defn(name="SendWhatsAppMessage")
class SendWhatsAppMessage:
    """Send one message to each recipient; one failing recipient does not fail the others."""

    @workflow.run
    async def run(self, inp: SendWhatsAppMessageInput) -> SendWhatsAppMessageResult:
        results: list[SendResult] = []
        for to in inp.to:
            try:
                res = await workflow.execute_activity_method(
                    WhatsAppActivities.send_text,
                    SendTextInput(
                        organization_id=inp.organization_id,
                        connection=inp.connection,
                        to=to,
                        text=inp.text,
                        preview_url=inp.preview_url,
                        idempotency_key=inp.idempotency_key,
                    ),
                    **SEND.kwargs(),
                )
            except ActivityError as err:
                res = SendResult(to=to, status="failed", error=error_from_details(err) or {"message": str(err)})
            results.append(res)
        failed = sum(1 for r in results if r.status == "failed")
        return SendWhatsAppMessageResult(results=results, sent=len(results) - failed, failed=failed)
