"""WhatsApp fake fidelity: biz_opaque_callback_data on sends and statuses, and Graph's unknown-object error."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

import httpx

GRAPH_DOCS = "https://developers.facebook.com/docs/graph-api"


async def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (got := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the expected event did not happen")
        await asyncio.sleep(0.02)
    return got


async def number(http: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    num = {"phone_number_id": str(10**14 + secrets.randbelow(10**14)), "token": "EAA" + secrets.token_hex(12),
           "app_secret": secrets.token_hex(8), "waba_id": str(10**14 + secrets.randbelow(10**14)),
           "webhook_url": f"{url}/_sandbox/sink/cb-{uuid.uuid4().hex[:8]}", "enforce_window": False,
           "status_delay_ms": 1, **extra}
    (await http.post(f"{url}/_sandbox/whatsapp/phone_numbers", json=num)).raise_for_status()
    return num


async def send(http: httpx.AsyncClient, url: str, num: dict[str, Any], to: str = "+16505551234",
               **extra: Any) -> httpx.Response:
    return await http.post(f"{url}/whatsapp/v23.0/{num['phone_number_id']}/messages",
                           headers={"Authorization": f"Bearer {num['token']}"},
                           json={"messaging_product": "whatsapp", "to": to, "type": "text",
                                 "text": {"body": "hello"}, **extra})


async def statuses(http: httpx.AsyncClient, num: dict[str, Any], wamid: str) -> list[dict[str, Any]]:
    got = (await http.get(num["webhook_url"])).json()
    docs = [json.loads(r["body"]) for r in got]
    return [s for d in docs for s in d["entry"][0]["changes"][0]["value"].get("statuses", []) if s["id"] == wamid]


async def test_callback_data_is_echoed_in_sent_delivered_and_read(sandbox):
    intent = f"intent:{uuid.uuid4()}"
    async with httpx.AsyncClient() as http:
        num = await number(http, sandbox.url)
        r = await send(http, sandbox.url, num, biz_opaque_callback_data=intent)
        assert r.status_code == 200
        wamid = r.json()["messages"][0]["id"]

        async def all_three() -> list[dict[str, Any]]:
            got = await statuses(http, num, wamid)
            return got if len(got) == 3 else []
        got = await wait_for(all_three)
        assert [s["status"] for s in got] == ["sent", "delivered", "read"]
        assert all(s["biz_opaque_callback_data"] == intent for s in got)


async def test_callback_data_is_echoed_in_a_failed_status(sandbox):
    async with httpx.AsyncClient() as http:
        num = await number(http, sandbox.url)
        (await http.post(f"{sandbox.url}/_sandbox/whatsapp/undeliverable",
                         json={"numbers": ["+16505550199"]})).raise_for_status()
        r = await send(http, sandbox.url, num, to="+16505550199", biz_opaque_callback_data="fail-intent")
        wamid = r.json()["messages"][0]["id"]
        failed = await wait_for(lambda: statuses(http, num, wamid))
        assert failed[0]["status"] == "failed" and failed[0]["errors"][0]["code"] == 131026
        assert failed[0]["biz_opaque_callback_data"] == "fail-intent"


async def test_statuses_carry_no_callback_data_when_the_send_had_none(sandbox):
    async with httpx.AsyncClient() as http:
        num = await number(http, sandbox.url, read=False, deliver=False)
        wamid = (await send(http, sandbox.url, num)).json()["messages"][0]["id"]
        sent = await wait_for(lambda: statuses(http, num, wamid))
        assert sent[0]["status"] == "sent" and "biz_opaque_callback_data" not in sent[0]


async def test_callback_data_limits(sandbox):
    async with httpx.AsyncClient() as http:
        num = await number(http, sandbox.url)
        exact = "x" * 511 + uuid.uuid4().hex[:1]
        assert (await send(http, sandbox.url, num, biz_opaque_callback_data=exact)).status_code == 200

        too_long = await send(http, sandbox.url, num, biz_opaque_callback_data="y" * 513)
        assert too_long.status_code == 400
        err = too_long.json()["error"]
        assert err["code"] == 100 and err["type"] == "OAuthException" and err["message"].startswith("(#100)")
        assert "biz_opaque_callback_data" in err["message"] and err["fbtrace_id"]
        assert err["error_data"]["messaging_product"] == "whatsapp"

        not_text = await send(http, sandbox.url, num, biz_opaque_callback_data={"intent": 1})
        assert not_text.status_code == 400 and not_text.json()["error"]["code"] == 100

        listing = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/messages",
                                  params={"phone_number_id": num["phone_number_id"]})).json()
        assert listing["count"] == 1  # refused sends created nothing
        assert listing["messages"][0]["biz_opaque_callback_data"] == exact


async def test_accepted_messages_are_listed_per_intent_number_and_recipient(sandbox):
    intent = f"intent-{uuid.uuid4().hex}"
    async with httpx.AsyncClient() as http:
        a, b = await number(http, sandbox.url), await number(http, sandbox.url)
        for num, to in ((a, "+16505550001"), (a, "+16505550002"), (b, "+16505550001")):
            assert (await send(http, sandbox.url, num, to=to, biz_opaque_callback_data=intent)).status_code == 200
        await send(http, sandbox.url, a, to="+16505550001", biz_opaque_callback_data="other")

        async def count(**params: str) -> int:
            r = await http.get(f"{sandbox.url}/_sandbox/whatsapp/messages", params=params)
            return int(r.json()["count"])
        assert await count(callback_data=intent) == 3
        assert await count(callback_data=intent, phone_number_id=a["phone_number_id"]) == 2
        assert await count(callback_data=intent, to="+1 650-555-0001") == 2


async def test_unknown_phone_number_id_answers_metas_graph_method_exception(sandbox):
    async with httpx.AsyncClient() as http:
        num = await number(http, sandbox.url)  # a valid token, so only the id is wrong
        r = await http.post(f"{sandbox.url}/whatsapp/v23.0/123456789012345/messages",
                            headers={"Authorization": f"Bearer {num['token']}"},
                            json={"messaging_product": "whatsapp", "to": "+16505551234", "type": "text",
                                  "text": {"body": "hi"}})
        assert r.status_code == 400
        err = r.json()["error"]
        message = ("Unsupported post request. Object with ID '123456789012345' does not exist, cannot be loaded "
                   "due to missing permissions, or does not support this operation. Please read the Graph API "
                   f"documentation at {GRAPH_DOCS}")
        assert err.pop("fbtrace_id")
        assert err == {"message": message, "type": "GraphMethodException", "code": 100, "error_subcode": 33}
        assert r.headers["www-authenticate"] == f'OAuth "Facebook Platform" "invalid_request" "{message}"'

        got = await http.get(f"{sandbox.url}/whatsapp/v23.0/123456789012345",
                             headers={"Authorization": f"Bearer {num['token']}"})
        assert got.status_code == 400
        assert got.json()["error"]["message"].startswith("Unsupported get request. Object with ID '123456789012345'")
