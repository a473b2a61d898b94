"""Lost answers: the fake processes and records an accepted send, but the client never gets the answer."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx
import pytest

IMPATIENT = httpx.Timeout(0.5)  # the client gives up long before the fake answers


async def wait_for(check: Any, timeout: float = 5.0) -> Any:
    """Poll an async predicate until it returns something truthy (a positive event), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the expected event did not happen")
        await asyncio.sleep(0.02)


async def faults(http: httpx.AsyncClient, url: str, provider: str, **cfg: Any) -> None:
    (await http.put(f"{url}/_sandbox/faults/{provider}", json=cfg)).raise_for_status()


async def whatsapp_number(http: httpx.AsyncClient, url: str, sink: str) -> dict[str, str]:
    num = {"phone_number_id": str(10**14 + secrets.randbelow(10**14)), "token": "EAA" + secrets.token_hex(12),
           "app_secret": secrets.token_hex(8), "waba_id": str(10**14 + secrets.randbelow(10**14)),
           "webhook_url": f"{url}/_sandbox/sink/{sink}", "enforce_window": False, "status_delay_ms": 1}
    (await http.post(f"{url}/_sandbox/whatsapp/phone_numbers", json=num)).raise_for_status()
    return num


def wa_send(url: str, num: dict[str, str], intent: str, to: str = "+16505551234") -> dict[str, Any]:
    return {"url": f"{url}/whatsapp/v23.0/{num['phone_number_id']}/messages",
            "headers": {"Authorization": f"Bearer {num['token']}"},
            "json": {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"},
                     "biz_opaque_callback_data": intent}}


async def test_whatsapp_lost_answer_message_exists_gets_webhooks_and_is_recorded(sandbox):
    sink = f"lost-{uuid.uuid4().hex[:8]}"
    intent = f"intent-{uuid.uuid4().hex}"
    async with httpx.AsyncClient() as http:
        num = await whatsapp_number(http, sandbox.url, sink)
        before = (await http.get(f"{sandbox.url}/_sandbox/answers")).json().get("whatsapp", {"accepted": 0, "lost": 0})
        await faults(http, sandbox.url, "whatsapp", lose_answer_next=1, hang_after_accept_ms=20_000)
        with pytest.raises(httpx.ReadTimeout):
            await http.post(**wa_send(sandbox.url, num, intent), timeout=IMPATIENT)

        # Provider side: the message was accepted and goes on to its status webhooks, callback data echoed.
        listing = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/messages",
                                  params={"callback_data": intent})).json()
        assert listing["count"] == 1
        wamid = listing["messages"][0]["id"]

        async def sent_status() -> list[dict[str, Any]]:
            got = (await http.get(f"{sandbox.url}/_sandbox/sink/{sink}")).json()
            return [r for r in got if wamid in r["body"] and '"status":"sent"' in r["body"]]
        delivered = await wait_for(sent_status)
        assert intent in delivered[0]["body"]

        lost = (await http.get(f"{sandbox.url}/_sandbox/requests",
                               params={"provider": "whatsapp", "lost_answer": "true"})).json()
        mine = [r for r in lost if r["path"].endswith(f"/{num['phone_number_id']}/messages")]
        assert len(mine) == 1 and mine[0]["status"] == 200
        assert mine[0]["response"]["messages"][0]["id"] == wamid  # the answer the client never saw

        # The client retries (it cannot know): the fault is spent, so it gets an answer; a second message.
        again = await http.post(**wa_send(sandbox.url, num, intent))
        assert again.status_code == 200 and again.json()["messages"][0]["id"] != wamid
        listing = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/messages",
                                  params={"callback_data": intent})).json()
        assert listing["count"] == 2
        after = (await http.get(f"{sandbox.url}/_sandbox/answers")).json()["whatsapp"]
        assert after["accepted"] - before["accepted"] == 2 and after["lost"] - before["lost"] == 1
        await faults(http, sandbox.url, "whatsapp")


async def test_a_held_answer_is_released_when_the_client_hangs_up(sandbox):
    async with httpx.AsyncClient() as http:
        num = await whatsapp_number(http, sandbox.url, f"hang-{uuid.uuid4().hex[:8]}")
        await faults(http, sandbox.url, "whatsapp", lose_answer_next=1, hang_after_accept_ms=60_000)
        with pytest.raises(httpx.ReadTimeout):
            await http.post(**wa_send(sandbox.url, num, "hang-up"), timeout=IMPATIENT)

        # Nothing stays in flight for the remaining minute: the fake noticed the disconnect.
        async def idle() -> bool:
            return sandbox.state.inflight.get("whatsapp", 0) == 0
        await wait_for(idle, timeout=3.0)
        await faults(http, sandbox.url, "whatsapp")


async def test_refused_sends_are_answered_and_do_not_use_up_the_fault(sandbox):
    async with httpx.AsyncClient() as http:
        num = await whatsapp_number(http, sandbox.url, f"refused-{uuid.uuid4().hex[:8]}")
        await faults(http, sandbox.url, "whatsapp", lose_answer_next=1, hang_after_accept_ms=20_000)
        bad = wa_send(sandbox.url, num, "x" * 513)  # refused: callback data too long
        refused = await http.post(**bad, timeout=IMPATIENT)
        assert refused.status_code == 400
        with pytest.raises(httpx.ReadTimeout):
            await http.post(**wa_send(sandbox.url, num, "accepted-then-lost"), timeout=IMPATIENT)
        await faults(http, sandbox.url, "whatsapp")


async def test_lose_answer_rate_is_seedable_and_every_send_is_still_processed(sandbox):
    intent = f"rate-{uuid.uuid4().hex}"
    async with httpx.AsyncClient() as http:
        num = await whatsapp_number(http, sandbox.url, f"rate-{uuid.uuid4().hex[:8]}")
        outcomes = []
        for _ in range(2):
            await faults(http, sandbox.url, "whatsapp", lose_answer_rate=0.5, hang_after_accept_ms=20_000, seed=11)
            run = []
            for i in range(8):
                try:
                    await http.post(**wa_send(sandbox.url, num, intent, to=f"+1650555{i:04d}"), timeout=IMPATIENT)
                    run.append("answered")
                except httpx.ReadTimeout:
                    run.append("lost")
            outcomes.append(run)
        assert outcomes[0] == outcomes[1]  # same seed, same losses
        assert 0 < outcomes[0].count("lost") < 8
        listing = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/messages",
                                  params={"callback_data": intent})).json()
        assert listing["count"] == 16
        await faults(http, sandbox.url, "whatsapp")


async def slack_setup(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    ws = (await http.post(f"{url}/_sandbox/slack/workspaces", json={"name": f"Lost {uuid.uuid4().hex[:6]}"})).json()
    ch = (await http.post(f"{url}/_sandbox/slack/workspaces/{ws['team_id']}/channels",
                          json={"name": f"ops-{uuid.uuid4().hex[:6]}"})).json()
    tok = (await http.post(f"{url}/_sandbox/slack/tokens", json={
        "team_id": ws["team_id"], "scopes": ["chat:write", "channels:history"]})).json()
    return {"team": ws["team_id"], "channel": ch["id"], "token": tok["access_token"]}


async def test_slack_lost_answer_message_is_in_the_channel(sandbox):
    intent = f"intent-{uuid.uuid4().hex}"
    async with httpx.AsyncClient() as http:
        s = await slack_setup(http, sandbox.url)
        auth = {"Authorization": f"Bearer {s['token']}"}
        await faults(http, sandbox.url, "slack", lose_answer_next=1, hang_after_accept_ms=20_000)
        # A refusal (HTTP 200, ok:false) is answered and does not use up the fault.
        refused = await http.post(f"{sandbox.url}/slack/api/chat.postMessage", headers=auth,
                                  json={"channel": "C_NOPE", "text": "x"}, timeout=IMPATIENT)
        assert refused.json() == {"ok": False, "error": "channel_not_found"}
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{sandbox.url}/slack/api/chat.postMessage", headers=auth, timeout=IMPATIENT, json={
                "channel": s["channel"], "text": "deploy done",
                "metadata": {"event_type": "osi_send", "event_payload": {"intent": intent}}})
        posted = (await http.get(f"{sandbox.url}/_sandbox/slack/messages",
                                 params={"channel": s["channel"], "payload.intent": intent})).json()
        assert posted["count"] == 1
        hist = (await http.get(f"{sandbox.url}/slack/api/conversations.history", headers=auth,
                               params={"channel": s["channel"], "include_all_metadata": "true"})).json()
        assert hist["messages"][0]["metadata"]["event_payload"] == {"intent": intent}
        lost = (await http.get(f"{sandbox.url}/_sandbox/requests",
                               params={"provider": "slack", "lost_answer": "true"})).json()
        assert any(r["response"]["ts"] == posted["messages"][0]["ts"] for r in lost)
        await faults(http, sandbox.url, "slack")


async def test_google_insert_and_graph_create_lose_their_answers_after_commit(sandbox):
    email = f"lost-{uuid.uuid4().hex[:8]}@example.com"
    box = f"lost-{uuid.uuid4().hex[:8]}@contoso.com"
    client_id, tenant = str(uuid.uuid4()), str(uuid.uuid4())
    async with httpx.AsyncClient() as http:
        (await http.post(f"{sandbox.url}/_sandbox/google/users", json={"email": email})).raise_for_status()
        gtok = (await http.post(f"{sandbox.url}/_sandbox/google/tokens", json={
            "email": email, "client_id": "lost-client"})).json()["access_token"]
        (await http.post(f"{sandbox.url}/_sandbox/graph/mailboxes", json={"email": box})).raise_for_status()
        (await http.post(f"{sandbox.url}/_sandbox/entra/apps", json={
            "client_id": client_id, "client_secret": "s", "tenant": tenant})).raise_for_status()
        mtok = (await http.post(f"{sandbox.url}/_sandbox/entra/tokens", json={
            "user": box, "client_id": client_id, "tenant": tenant})).json()["access_token"]

        await faults(http, sandbox.url, "google", lose_answer_next=1, hang_after_accept_ms=20_000)
        event_id = "lost" + uuid.uuid4().hex
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{sandbox.url}/google/calendar/v3/calendars/primary/events", timeout=IMPATIENT,
                            headers={"Authorization": f"Bearer {gtok}"}, json={
                                "id": event_id, "summary": "standup",
                                "start": {"dateTime": "2030-01-07T09:00:00Z"},
                                "end": {"dateTime": "2030-01-07T09:15:00Z"}})
        events = (await http.get(f"{sandbox.url}/_sandbox/google/calendars/{email}/events")).json()
        assert [e["id"] for e in events] == [event_id]
        await faults(http, sandbox.url, "google")

        await faults(http, sandbox.url, "graph", lose_answer_next=1, hang_after_accept_ms=20_000)
        txn = str(uuid.uuid4())
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{sandbox.url}/graph/v1.0/me/events", timeout=IMPATIENT,
                            headers={"Authorization": f"Bearer {mtok}"}, json={
                                "subject": "standup", "transactionId": txn,
                                "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
                                "end": {"dateTime": "2030-01-07T09:15:00", "timeZone": "UTC"}})
        created = (await http.get(f"{sandbox.url}/_sandbox/graph/mailboxes/{box}/events")).json()
        assert [e["transactionId"] for e in created] == [txn]
        lost = (await http.get(f"{sandbox.url}/_sandbox/requests",
                               params={"provider": "graph", "lost_answer": "true"})).json()
        assert any(r["status"] == 201 and r["response"]["id"] == created[0]["id"] for r in lost)
        await faults(http, sandbox.url, "graph")
