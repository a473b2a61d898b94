"""Rate limits: per-number throughput (130429), pair limit (131056) and the portfolio's 24 h messaging
limit. With our limiter on, the sandbox never rejects; without it, the same traffic is rejected, which
shows the fake enforces what the limiter prevents."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp.models import OutboundMessage, SendWhatsAppMessageInput, SendWhatsAppMessageResult, Template
from activities.whatsapp.sending import send_one
from activities.whatsapp.store import WhatsAppStore
from core.limiter import Limit, MemoryLimiter
from tests.test_pacing import FakeTime
from tests.test_whatsapp_support import customer_writes, sandbox_stats, wa_conn, wid


def raw_send(sandbox_url: str, wa, to: str, text: str = "x") -> tuple[str, dict, dict]:
    return (f"{sandbox_url}/whatsapp/v23.0/{wa.phone_number_id}/messages",
            {"Authorization": f"Bearer {wa.token}"},
            {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": text}})


async def raw_burst(sandbox_url: str, wa, recipients: list[str]) -> list[int]:
    """A plain loop without any limiter: what Meta sees from a naive client."""
    codes = []
    async with httpx.AsyncClient() as http:
        for to in recipients:
            url, headers, body = raw_send(sandbox_url, wa, to)
            r = await http.post(url, headers=headers, json=body)
            codes.append(r.json()["error"]["code"] if r.status_code != 200 else 200)
    return codes


# No margin on the limits: the limiter holds each slot until Meta's answer. This interpreter also runs the
# in-thread sandbox, so a garbage collection pauses client and "Meta" at once; the answer comes after the pause,
# and so does the next window.


async def test_throughput_limit_waits_instead_of_130429(runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, throughput_mps=10, sandbox={"enforce_window": False})
    before = (await sandbox_stats(sandbox.url))["throughput_errors"]
    msg = OutboundMessage(type="text", text="hello")
    # Arrival jitter on every request (lognormal, median 5 ms, tail to 250 ms): pacing the sends at exactly
    # 10 msg/s from our clock would put 11 into one of the sandbox's seconds now and then.
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sandbox.url}/_sandbox/network", json={
            "jitter_ms": 5, "jitter_dist": "lognormal", "jitter_sigma": 1.0, "jitter_inbound_fraction": 1.0})
         ).raise_for_status()
        try:
            results = await asyncio.gather(*(send_one(runtime, wa.organization_id, "default", f"+1650555{3000 + i}",
                                                      msg, f"tp-{i}") for i in range(35)))
        finally:
            await http.put(f"{sandbox.url}/_sandbox/network", json={})
    assert all(r.status == "accepted" for r in results)
    assert (await sandbox_stats(sandbox.url))["throughput_errors"] == before
    # The same burst without the limiter is refused by the fake, as Meta would.
    naive = await wa_conn(runtime, sandbox.url, throughput_mps=10, sandbox={"enforce_window": False})
    codes = await raw_burst(sandbox.url, naive, [f"1650555{3100 + i}" for i in range(15)])
    assert codes.count(130429) >= 5 and codes[:10] == [200] * 10


async def test_pair_limit_waits_instead_of_131056(runtime, sandbox) -> None:
    pair = {"pair_period_seconds": 0.4, "pair_burst": 1}
    wa = await wa_conn(runtime, sandbox.url, settings=pair, sandbox={**pair, "enforce_window": False})
    before = (await sandbox_stats(sandbox.url))["pair_errors"]
    msg = OutboundMessage(type="text", text="again")
    results = await asyncio.gather(*(send_one(runtime, wa.organization_id, "default", "+16505553200", msg, f"p-{i}")
                                     for i in range(5)))
    assert all(r.status == "accepted" for r in results)
    assert (await sandbox_stats(sandbox.url))["pair_errors"] == before
    naive = await wa_conn(runtime, sandbox.url, sandbox={**pair, "enforce_window": False})
    assert await raw_burst(sandbox.url, naive, ["16505553201"] * 3) == [200, 131056, 131056]


async def test_a_130429_pauses_the_numbers_pace(runtime, sandbox, monkeypatch) -> None:
    """Throttled anyway (here: Meta allows the number less than its connection says): the number's key pauses
    for a second (130429 has no Retry-After) instead of sending the next message into the same second."""
    clock = FakeTime()
    monkeypatch.setattr(runtime, "limiter", MemoryLimiter(clock=clock, sleep=clock.sleep))
    wa = await wa_conn(runtime, sandbox.url, throughput_mps=80, sandbox={"enforce_window": False, "throughput_mps": 1})
    msg = OutboundMessage(type="text", text="hello")
    first = await send_one(runtime, wa.organization_id, "default", "+16505553400", msg, "pace-1")
    assert first.status == "accepted"
    key = f"whatsapp.throughput:{wa.phone_number_id}"
    paced = runtime.limiter._keys[key].tat
    assert paced == pytest.approx(clock() + 1 / 80)  # evenly paced: the next one may go 12.5 ms later
    with pytest.raises(ApplicationError, match="130429"):
        await send_one(runtime, wa.organization_id, "default", "+16505553401", msg, "pace-2")
    # Paused for the key's period (a second), then its catch-up allowance on top (GCRA tolerance).
    lim = Limit("whatsapp.throughput", wa.phone_number_id, 80, 1.0, burst=8)
    assert runtime.limiter._keys[key].tat == pytest.approx(clock() + 1.0 + lim.tolerance)


async def test_sandbox_pair_limit_has_the_documented_burst(runtime, sandbox) -> None:
    """About one message per 6 s, bursts up to 45 borrowed ahead, then blocked."""
    wa = await wa_conn(runtime, sandbox.url, throughput_mps=1000, sandbox={"enforce_window": False})
    codes = await raw_burst(sandbox.url, wa, ["16505553300"] * 47)
    assert codes[:45] == [200] * 45 and codes[45:] == [131056, 131056]


def hello(recipients: list[str], **kw) -> SendWhatsAppMessageInput:
    return SendWhatsAppMessageInput(to=recipients, type="template", template=Template(name="hello_world"), **kw)


async def test_portfolio_limit_holds_and_resumes_not_drops(client, worker, runtime, sandbox, gateway, task_queue):
    limit = {"messaging_limit": 2, "messaging_limit_window_seconds": 1.5}
    wa = await wa_conn(runtime, sandbox.url, gateway, settings=limit,
                       sandbox={"messaging_limit_tier": "TIER_2", "messaging_limit_window_seconds": 1.5})
    customers = ["+16505553401", "+16505553402", "+16505553403", "+16505553404"]
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id,
                                        [c.lstrip("+") for c in customers], "signup")
    # The fourth customer wrote to us: replying to them opens no new conversation and costs no slot.
    await customer_writes(sandbox.url, wa, customers[3], "question")
    before = (await sandbox_stats(sandbox.url))["tier_failures"]
    res: SendWhatsAppMessageResult = await client.execute_workflow(
        "SendWhatsAppMessage", hello(customers, organization_id=wa.organization_id), id=wid("limit"),
        task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    assert [r.status for r in res.results] == ["accepted"] * 4 and res.held == 0
    assert (await sandbox_stats(sandbox.url))["tier_failures"] == before
    ws = WhatsAppStore(runtime.store)
    assert ws.initiations(wa.waba_id, 60) == 3  # the portfolio defaults to the WABA; the held one resumed
    # Told not to wait, the workflow reports the hold instead.
    more = ["+16505553405", "+16505553406", "+16505553407"]
    ws.opt_in(wa.organization_id, wa.phone_number_id, [c.lstrip("+") for c in more], "signup")
    res = await client.execute_workflow(
        "SendWhatsAppMessage", hello(more, organization_id=wa.organization_id, hold_when_limited=False),
        id=wid("limit"), task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    assert res.held >= 1 and all(r.resume_at for r in res.results if r.status == "held")


async def test_sandbox_enforces_the_messaging_tier(runtime, sandbox, gateway) -> None:
    wa = await wa_conn(runtime, sandbox.url, gateway, settings={"messaging_limit": "unlimited"},
                       sandbox={"messaging_limit_tier": "TIER_2"})
    customers = ["+16505553501", "+16505553502", "+16505553503"]
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id,
                                        [c.lstrip("+") for c in customers], "signup")
    before = (await sandbox_stats(sandbox.url))["tier_failures"]
    msg = OutboundMessage(type="template", template=Template(name="hello_world"))
    for i, c in enumerate(customers):
        assert (await send_one(runtime, wa.organization_id, "default", c, msg, f"tier-{i}")).status == "accepted"
    assert (await sandbox_stats(sandbox.url))["tier_failures"] == before + 1  # the third failed later, by webhook
