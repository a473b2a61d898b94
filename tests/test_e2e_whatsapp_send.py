"""End to end: SendWhatsAppMessage through Temporal, Vault and the sandbox."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from core.runtime import Runtime
from tests import seed


async def run_send(client: Client, task_queue: str, inp: SendWhatsAppMessageInput) -> SendWhatsAppMessageResult:
    return await client.execute_workflow(
        "SendWhatsAppMessage", inp, id=f"wa-{uuid.uuid4().hex}", task_queue=task_queue,
        result_type=SendWhatsAppMessageResult,
    )


async def failed_send(client: Client, task_queue: str, inp: SendWhatsAppMessageInput, error_class: str
                      ) -> SendWhatsAppMessageResult:
    """A send that reached nobody ends Failed with the shared error class; its result is in the details."""
    with pytest.raises(WorkflowFailureError) as failed:
        await run_send(client, task_queue, inp)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == error_class, cause
    return SendWhatsAppMessageResult.model_validate(cause.details[0]["result"])


async def test_text_send_end_to_end(client, worker, runtime: Runtime, sandbox, gateway, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    res = await run_send(client, task_queue, SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+1 650-555-1234", text="Hello from OpenSyte"))
    assert res.sent == 1 and res.failed == 0
    r = res.results[0]
    assert r.status == "accepted" and r.message_id and r.message_id.startswith("wamid.")
    assert r.wa_id == "16505551234"
    reqs = [q for q in sandbox.state.recorder.dump("whatsapp") if q["path"].endswith("/messages")
            and q["body"] and q["body"].get("to") == "16505551234"]
    body = dict(reqs[-1]["body"])
    # The send names its intent, so a lost answer can be reconciled from the status webhooks.
    assert body.pop("biz_opaque_callback_data").startswith("osi:")
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                    "to": "16505551234", "type": "text",
                    "text": {"body": "Hello from OpenSyte", "preview_url": False}}
    # Status webhooks (signed by the sandbox, verified by the gateway) reach the usage ledger.
    for _ in range(100):
        rows = runtime.store.usage(connection_id=wa.connection_id, action="whatsapp.send_text")
        if rows and rows[-1].delivery_status == "read":
            break
        await asyncio.sleep(0.05)
    assert rows[-1].reference == r.message_id and rows[-1].delivery_status == "read"
    assert rows[-1].delivered_at is not None


async def test_invalid_number_fails_at_once_as_permanent(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    res = await run_send(client, task_queue, SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to=["12", "+16505551234"], text="hi"))
    bad, good = res.results
    assert bad.status == "failed" and bad.error and bad.error["error_class"] == "PermanentError"
    assert "not a valid phone number" in bad.error["message"] or "E.164" in bad.error["message"]
    assert good.status == "accepted"


async def test_other_organizations_connection_is_refused(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    res = await failed_send(client, task_queue, SendWhatsAppMessageInput(
        organization_id="org_intruder", connection=wa.name, to="+16505551234", text="hi"), "ConfigurationError")
    err = res.results[0].error
    assert err and err["error_class"] == "ConfigurationError" and err["code"] == "connection_not_found"


@pytest.mark.parametrize("case", ["5xx", "130429"])
async def test_temporary_errors_are_retried(case, client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url, throughput_mps=1 if case == "130429" else 80)
    async with httpx.AsyncClient() as http:
        if case == "5xx":
            await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp",
                           json={"errors_next": 2, "retry_after": 0.2})
        else:
            # Exhaust the number's 1 msg/s budget from outside, so our first attempt hits 130429.
            await http.post(f"{sandbox.url}/whatsapp/v23.0/{wa.phone_number_id}/messages",
                            headers={"Authorization": f"Bearer {wa.token}"},
                            json={"messaging_product": "whatsapp", "to": "16505550000", "type": "text",
                                  "text": {"body": "x"}})
    try:
        res = await run_send(client, task_queue, SendWhatsAppMessageInput(
            organization_id=wa.organization_id, to="+16505551234", text="retry me"))
    finally:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")
    assert res.results[0].status == "accepted"
    rows = runtime.store.usage(connection_id=wa.connection_id, action="whatsapp.send_text")
    outcomes = [r.outcome for r in rows]
    assert outcomes[-1] == "ok"
    if case == "5xx":
        assert outcomes.count("TemporaryError") == 2
    # (130429 is prevented by our limiter when it knows the budget; the sandbox saw no rejection here)


async def test_expired_token_is_configuration_and_marks_unhealthy(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": wa.token})
    res = await failed_send(client, task_queue, SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+16505551234", text="hi"), "ConfigurationError")
    err = res.results[0].error
    assert err and err["error_class"] == "ConfigurationError" and err["code"] == 190
    rows = runtime.store.usage(connection_id=wa.connection_id, action="whatsapp.send_text")
    assert len(rows) == 1  # no retry
    conn = runtime.store.get_connection(wa.connection_id)
    assert conn.health == "unhealthy"
    notes = runtime.store.notifications(connection_id=wa.connection_id)
    assert notes and notes[-1].kind == "reauth_required"


async def test_undeliverable_arrives_as_async_failure(client, worker, runtime: Runtime, sandbox, gateway,
                                                      task_queue):
    """131026 comes by status webhook: the send was accepted, the ledger learns it failed."""
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/undeliverable", json={"numbers": ["+16505550777"]})
    res = await run_send(client, task_queue, SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+16505550777", text="hello?"))
    assert res.results[0].status == "accepted"
    for _ in range(100):
        rows = runtime.store.usage(connection_id=wa.connection_id, action="whatsapp.send_text")
        if rows and rows[-1].delivery_status == "failed":
            break
        await asyncio.sleep(0.05)
    assert (rows[-1].delivery_status, rows[-1].error_code) == ("failed", "131026")


async def test_sandbox_rejects_malformed_messages_like_meta(runtime, sandbox):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox.url}/whatsapp/v23.0/{wa.phone_number_id}/messages",
                            headers={"Authorization": f"Bearer {wa.token}"},
                            json={"messaging_product": "whatsapp", "to": "1650", "type": "text", "text": {}})
        assert r.status_code == 400 and r.json()["error"]["code"] == 100
        r = await http.post(f"{sandbox.url}/whatsapp/v23.0/{wa.phone_number_id}/messages",
                            headers={"Authorization": "Bearer EAAwrong"}, json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == 190
        assert r.json()["error"]["type"] == "OAuthException" and r.json()["error"]["fbtrace_id"]
