"""BulkSendWhatsAppTemplate: counts (sent / failed by error / skipped by reason), pause, resume, cancel,
held-and-resumed at the portfolio limit, a configuration error mid-campaign, retries that never resend;
and the benchmark script at small numbers."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import (
    BulkProgress,
    BulkRecipient,
    BulkSendWhatsAppTemplateInput,
    TemplatesInput,
)
from activities.whatsapp.store import WhatsAppStore
from tests.test_whatsapp_support import ORDER_TEMPLATE, env, eventually, sandbox_stats, wa_conn, wid
from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate

GREETING = {"name": "greeting", "language": "en_US", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Hi {{1}}, your code is {{2}}."}]}


def numbers(start: int, n: int) -> list[str]:
    return [f"+1650556{start + i:04d}" for i in range(n)]


def opt_in(runtime, wa, recipients: list[str]) -> None:
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, [r.lstrip("+") for r in recipients],
                                        "campaign signup")


def bulk_input(wa, recipients: list[BulkRecipient], **kw) -> BulkSendWhatsAppTemplateInput:
    return BulkSendWhatsAppTemplateInput(organization_id=wa.organization_id, template_name="greeting",
                                         recipients=recipients, **kw)


def delivered_to(sandbox, wa) -> Counter:
    return Counter(r["body"]["to"] for r in sandbox.state.recorder.dump("whatsapp")
                   if r["path"].endswith(f"/{wa.phone_number_id}/messages") and r["status"] == 200)


async def waits_for_a_signal(client: Client, workflow_id: str) -> bool:
    """The workflow can do nothing until something from outside arrives: no activity in flight, no workflow task
    pending and no timer that has not fired."""
    handle = client.get_workflow_handle(workflow_id)
    desc = (await handle.describe()).raw_description
    if desc.pending_activities or desc.HasField("pending_workflow_task"):
        return False
    timers: set[str] = set()
    async for ev in handle.fetch_history_events():
        if ev.HasField("timer_started_event_attributes"):
            timers.add(ev.timer_started_event_attributes.timer_id)
        elif ev.HasField("timer_fired_event_attributes"):
            timers.discard(ev.timer_fired_event_attributes.timer_id)
        elif ev.HasField("timer_canceled_event_attributes"):
            timers.discard(ev.timer_canceled_event_attributes.timer_id)
    return not timers


async def progress(client: Client, workflow_id: str) -> BulkProgress:
    return await client.get_workflow_handle(workflow_id).query(BulkSendWhatsAppTemplate.get_progress)


async def test_counts_sent_failed_skipped(client, worker, runtime, sandbox, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING])
    good = numbers(0, 14)
    opt_in(runtime, wa, [*good, "+16505560100", "+16505560101"])
    WhatsAppStore(runtime.store).opt_out(wa.organization_id, wa.phone_number_id, "16505560101", "complaint")
    recipients = [BulkRecipient(to=n, body=[f"Customer {i}", f"C{i:03d}"]) for i, n in enumerate(good)]
    recipients += [
        BulkRecipient(to="+16505560102", body=["A", "B"]),  # never opted in
        BulkRecipient(to="+16505560101", body=["A", "B"]),  # opted out
        BulkRecipient(to="12", body=["A", "B"]),  # not a phone number
        BulkRecipient(to="+16505560100", body=["only one"]),  # parameters do not fit the template
    ]
    res = await client.execute_workflow(BulkSendWhatsAppTemplate.run, bulk_input(wa, recipients, batch_size=6),
                                        id=wid("bulk"), task_queue=task_queue)
    assert (res.total, res.sent, res.failed, res.skipped, res.cancelled, res.held) == (18, 14, 2, 2, 0, 0)
    assert res.failed_by_error == {"invalid_phone_number": 1, "template_params_mismatch": 1}
    assert res.skipped_by_reason == {"no_opt_in": 1, "opted_out": 1}
    assert res.state == "completed" and {f.index for f in res.failures} == {16, 17}
    sent = [r["body"] for r in sandbox.state.recorder.dump("whatsapp")
            if r["path"].endswith(f"/{wa.phone_number_id}/messages") and r["status"] == 200]
    params = {b["to"]: b["template"]["components"][0]["parameters"][1]["text"] for b in sent}
    assert params == {n.lstrip("+"): f"C{i:03d}" for i, n in enumerate(good)}
    rows = WhatsAppStore(runtime.store).messages(wa.organization_id)
    assert {r.category for r in rows} == {"marketing"} and len(rows) == 14


async def test_pause_resume(client, worker, runtime, sandbox, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING], throughput_mps=6)
    recipients = numbers(200, 30)
    opt_in(runtime, wa, recipients)
    wf = wid("bulk-pause")
    handle = await client.start_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
        wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients], batch_size=6, max_parallel_batches=1,
        concurrency=6), id=wf, task_queue=task_queue)
    await eventually(lambda: progress(client, wf), lambda p: p.sent >= 6, tries=400)
    await handle.signal(BulkSendWhatsAppTemplate.pause)
    paused = await eventually(lambda: progress(client, wf), lambda p: p.state == "paused", tries=400)
    assert paused.state == "paused" and 6 <= paused.sent < 30
    sent_while_paused = sum(delivered_to(sandbox, wa).values())
    assert sent_while_paused == paused.sent
    # Paused means paused: no batch in flight, no timer, no workflow task — nothing can run before a signal.
    assert await eventually(lambda: waits_for_a_signal(client, wf), lambda blocked: blocked)
    assert sum(delivered_to(sandbox, wa).values()) == sent_while_paused
    assert (await progress(client, wf)).sent == paused.sent
    await handle.signal(BulkSendWhatsAppTemplate.resume)
    res = await handle.result()
    assert (res.state, res.sent, res.failed, res.skipped, res.cancelled) == ("completed", 30, 0, 0, 0)
    assert set(delivered_to(sandbox, wa).values()) == {1}  # each customer exactly once


async def test_cancel_counts_the_rest(client, worker, runtime, sandbox, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING], throughput_mps=6)
    recipients = numbers(300, 30)
    opt_in(runtime, wa, recipients)
    wf = wid("bulk-cancel")
    handle = await client.start_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
        wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients], batch_size=6, max_parallel_batches=1,
        concurrency=6), id=wf, task_queue=task_queue)
    await eventually(lambda: progress(client, wf), lambda p: p.sent >= 6, tries=400)
    await handle.signal(BulkSendWhatsAppTemplate.cancel)
    res = await handle.result()
    assert res.state == "cancelled" and 6 <= res.sent < 30
    assert res.sent + res.cancelled == 30
    assert sum(delivered_to(sandbox, wa).values()) == res.sent


async def test_messages_meta_holds_or_pauses_are_counted_apart(client, worker, runtime, sandbox, task_queue) -> None:
    """Meta can answer a marketing send `held_for_quality_assessment` (it may still deliver or drop it) or
    `paused`: they were sent, and the result says how many of each; the message timeline starts there."""
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING])
    recipients = numbers(700, 5)
    opt_in(runtime, wa, recipients)
    async with httpx.AsyncClient() as http:
        for who, status in ((recipients[1], "held_for_quality_assessment"), (recipients[3], "paused")):
            r = await http.post(f"{sandbox.url}/_sandbox/whatsapp/quality_hold", json={"numbers": [who],
                                                                                       "status": status})
            assert r.json() == {"ok": True}
    res = await client.execute_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
        wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients]), id=wid("bulk-hold"), task_queue=task_queue)
    assert (res.sent, res.failed) == (5, 0)
    assert res.sent_by_provider_status == {"held_for_quality_assessment": 1, "paused": 1}
    rows = {r.wa_id: r for r in WhatsAppStore(runtime.store).messages(wa.organization_id)}
    assert rows[recipients[3].lstrip("+")].timeline[0]["status"] == "paused"
    assert rows[recipients[0].lstrip("+")].timeline[0]["status"] == "accepted"


async def test_portfolio_limit_holds_then_resumes(client, worker, runtime, sandbox, task_queue) -> None:
    limit = {"messaging_limit": 3, "messaging_limit_window_seconds": 1.5}
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING], settings=limit,
                       sandbox={"messaging_limit_tier": "TIER_3", "messaging_limit_window_seconds": 1.5})
    recipients = numbers(400, 5)
    opt_in(runtime, wa, recipients)
    before = (await sandbox_stats(sandbox.url))["tier_failures"]
    wf = wid("bulk-held")
    handle = await client.start_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
        wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients]), id=wf, task_queue=task_queue)
    held = await eventually(lambda: progress(client, wf), lambda p: p.state == "held", tries=400, delay=0.02)
    assert (held.sent, held.held) == (3, 2)
    res = await handle.result()
    assert (res.state, res.sent, res.held, res.cancelled) == ("completed", 5, 0, 0)
    assert (await sandbox_stats(sandbox.url))["tier_failures"] == before


async def test_configuration_error_stops_with_counts(client, worker, runtime, sandbox, task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[{**GREETING, "status": "PAUSED"}])
    recipients = numbers(500, 4)
    opt_in(runtime, wa, recipients)
    with pytest.raises(WorkflowFailureError) as exc:
        await client.execute_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
            wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients]), id=wid("bulk-cfg"),
            task_queue=task_queue)
    cause = exc.value.cause
    assert cause.type == "ConfigurationError" and "PAUSED" in cause.message
    counts = cause.details[0]
    # Not cancelled: each recipient failed with the configuration error that stopped the send.
    assert (counts["state"], counts["sent"], counts["failed"], counts["cancelled"]) == ("failed", 0, 4, 0)
    assert counts["failed_by_error"] == {"template_paused": 4}


async def test_temporary_failure_retries_the_batch_without_resending(client, worker, runtime, sandbox,
                                                                     task_queue) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[GREETING, ORDER_TEMPLATE])
    await env().run(WhatsAppActivities(runtime).list_templates, TemplatesInput(organization_id=wa.organization_id))
    recipients = numbers(600, 12)
    opt_in(runtime, wa, recipients)
    async with httpx.AsyncClient() as http:  # the next provider call fails with a 5xx; the batch is retried
        await http.put(f"{sandbox.url}/_sandbox/faults/whatsapp", json={"errors_next": 1, "retry_after": 0.2})
    try:
        res = await client.execute_workflow(BulkSendWhatsAppTemplate.run, bulk_input(
            wa, [BulkRecipient(to=n, body=["A", "B"]) for n in recipients], batch_size=12, concurrency=3),
            id=wid("bulk-retry"), task_queue=task_queue)
    finally:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{sandbox.url}/_sandbox/faults")
    assert (res.sent, res.failed) == (12, 0)
    per_customer = delivered_to(sandbox, wa)
    assert len(per_customer) == 12 and set(per_customer.values()) == {1}


async def test_benchmark_script_at_small_numbers(client, worker, runtime, sandbox, task_queue, capsys) -> None:
    from bench.whatsapp_bulk import run_bench

    # No margin: the in-thread sandbox shares this interpreter's GC pauses, and a paused answer holds its slot.
    report = await run_bench(client, runtime, sandbox.url, task_queue, messages=240, mps=120, batch_size=60)
    out = capsys.readouterr().out
    assert report["sent"] == 240 and report["rejected_130429"] == 0 and report["plain_rejected_130429"] == 0
    assert report["ratio_to_limit"] > 0 and report["ratio_to_plain_loop"] > 0 and report["provider_side_ratio"] > 0
    assert "ratio to the limit" in out and "plain sequential httpx loop" in out
