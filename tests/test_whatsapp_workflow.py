"""SendWhatsAppMessage as OpenSyte starts it: plain JSON with WhatsAppAction columns, per-recipient results,
and bad content failing the workflow at once (nothing sent)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from tests.test_whatsapp_support import customer_writes, sent_bodies, wa_conn, wid


async def test_opensyte_action_from_plain_json(client, worker, runtime, sandbox, gateway, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway)
    await customer_writes(sandbox.url, wa, "+16505558001", "send me the invoice please")
    action = {  # an OpenSyte WhatsAppAction row, as TypeScript would pass it
        "organization_id": wa.organization_id, "connection": "default", "integrationId": "ckxintegration0001",
        "toNumbers": ["{contact.phone}", "12"], "messageType": "DOCUMENT", "mediaType": "document",
        "mediaUrl": "https://files.example/{INVOICE_NUMBER}.pdf",
        "caption": "Invoice {INVOICE_NUMBER} for {{ contact.name }}",
        "variables": {"contact": {"phone": "+16505558001", "name": "Ada"}, "INVOICE_NUMBER": "INV-7"},
    }
    res = await client.execute_workflow("SendWhatsAppMessage", action, id=wid("os"), task_queue=task_queue,
                                        result_type=dict)
    ok, bad = res["results"]
    assert (res["sent"], res["failed"]) == (1, 1)
    assert ok["status"] == "accepted" and ok["category"] == "service" and ok["message_id"].startswith("wamid.")
    assert bad["status"] == "failed" and bad["error"]["error_class"] == "PermanentError"
    (body,) = [b for b in sent_bodies(sandbox, wa.phone_number_id) if b["to"] == "16505558001"]
    assert body["document"] == {"link": "https://files.example/INV-7.pdf", "caption": "Invoice INV-7 for Ada",
                                "filename": "INV-7.pdf"}


@pytest.mark.parametrize(("action", "message"), [
    ({"type": "interactive", "interactive": {"type": "button", "body": "Pick", "buttons": [
        {"id": str(i), "title": "t"} for i in range(4)]}}, "message.interactive.buttons: 1-3 reply buttons allowed"),
    ({"messageType": "TEXT", "textMessage": "Hi {missing}"}, "text: no value for variable {missing}"),
    ({"messageType": "TEMPLATE"}, "templateName: is required for messageType TEMPLATE"),
])
async def test_bad_content_fails_the_workflow_before_any_send(client, worker, runtime, sandbox, task_queue,
                                                              action, message) -> None:
    wa = await wa_conn(runtime, sandbox.url)
    with pytest.raises(WorkflowFailureError) as exc:
        await client.execute_workflow("SendWhatsAppMessage", {"organization_id": wa.organization_id,
                                                              "to": ["+16505558002"], **action},
                                      id=wid("bad"), task_queue=task_queue, result_type=dict)
    assert exc.value.cause.type == "PermanentError" and message in exc.value.cause.message
    assert not sent_bodies(sandbox, wa.phone_number_id)
