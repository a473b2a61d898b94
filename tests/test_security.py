"""Security: a canary secret never leaks; payloads are encrypted at rest; the codec endpoint works."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import sqlite3
import uuid

import httpx
import uvicorn
from sqlalchemy import inspect as sa_inspect
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from core.connections import masked_credentials
from core.logs import install_filters
from gateway.app import create_app as create_gateway
from tests import seed
from tests.helpers import dump_store
from tests.history import history_texts
from worker.stack import reserve_port


async def test_canary_secret_never_leaks(client, worker, runtime, sandbox, gateway, task_queue, caplog, stack):
    caplog.set_level(logging.DEBUG)
    canary = "EAAcanary" + secrets.token_hex(12)
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway, token=canary)
    ids = []
    async def send(to: str) -> SendWhatsAppMessageResult:
        """The result, also of a send that reached nobody (it ends Failed, the result in the error's details)."""
        wid = f"canary-{uuid.uuid4().hex}"
        ids.append(wid)
        try:
            return await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
                organization_id=wa.organization_id, to=to, text="hi"), id=wid, task_queue=task_queue,
                result_type=SendWhatsAppMessageResult)
        except WorkflowFailureError as failed:
            assert isinstance(failed.cause, ApplicationError)
            return SendWhatsAppMessageResult.model_validate(failed.cause.details[0]["result"])

    for to in ("+16505551234", "not-a-number"):
        await send(to)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": canary})
    res = await send("+16505551234")
    assert res.results[0].error and res.results[0].error["code"] == 190  # the failure path ran too

    haystacks = {"store": dump_store(runtime), "logs": caplog.text,
                 "errors": repr([r.error for r in res.results]),
                 "masked": repr(await masked_credentials(runtime, runtime.store.get_connection(wa.connection_id)))}
    for wid in ids:
        raw, decoded = await history_texts(client, wid)
        haystacks[f"history:{wid}"] = raw + decoded
        assert '"text":"hi"' in decoded.replace(" ", "").replace('\\', "")  # decoded view is plaintext
    for log_file in stack.data_dir.glob("*.log"):
        haystacks[log_file.name] = log_file.read_text(errors="replace")
    haystacks["gateway access log"] = await access_log_of_verification(runtime, wa, canary)
    assert f"/webhooks/whatsapp/{wa.connection_id}" in haystacks["gateway access log"]
    for where, text_ in haystacks.items():
        assert canary not in text_, f"canary token leaked into {where}"
        assert wa.app_secret not in text_, f"app secret leaked into {where}"


async def access_log_of_verification(runtime, wa, canary: str) -> str:
    """A gateway with uvicorn's access log on, through the process's log filters: Meta's verification request
    carries the verify token in its query string (here: the canary), and a bearer header carries it too."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_filters(handler)
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    sock = reserve_port()  # bound here and handed to uvicorn: no other process can take the port in between
    port = int(sock.getsockname()[1])
    app = create_gateway(runtime.settings, rt=runtime, temporal=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="info",
                                           access_log=True))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/webhooks/whatsapp/{wa.connection_id}", params={
                "hub.mode": "subscribe", "hub.verify_token": canary, "hub.challenge": "42"},
                headers={"Authorization": f"Bearer {canary}"})
            assert r.status_code == 403
    finally:
        server.should_exit = True
        await task
        access.removeHandler(handler)
        sock.close()
    return stream.getvalue()


async def test_failure_messages_are_encrypted_in_raw_history(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    wid = f"fail-{uuid.uuid4().hex}"
    try:
        await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
            organization_id=wa.organization_id, to="12", text="hi"), id=wid, task_queue=task_queue,
            result_type=SendWhatsAppMessageResult)
    except WorkflowFailureError:
        pass
    raw, decoded = await history_texts(client, wid)
    assert "not a phone number" in decoded  # readable through the codec
    assert "not a phone number" not in raw and "Encoded failure" in raw  # not in Temporal's storage


async def test_payloads_are_encrypted_in_history(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    wid = f"enc-{uuid.uuid4().hex}"
    await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+16505550199", text="private words"), id=wid,
        task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    raw, decoded = await history_texts(client, wid)
    assert "private words" not in raw and "16505550199" not in raw
    assert "binary/encrypted" in decoded or "private words" in decoded
    assert "private words" in decoded


async def test_codec_endpoint_round_trip_and_auth(gateway, settings):
    body = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjoxfQ=="}]}
    async with httpx.AsyncClient() as http:
        enc = (await http.post(f"{gateway}/codec/encode", json=body)).json()
        assert enc["payloads"][0]["metadata"]["encoding"] != "anNvbi9wbGFpbg=="
        dec = (await http.post(f"{gateway}/codec/decode", json=enc)).json()
        assert dec == body
        assert (await http.post(f"{gateway}/codec/decode", content=b"{not json")).status_code == 400
        pre = await http.options(f"{gateway}/codec/decode")
        assert pre.headers["access-control-allow-origin"] == settings.temporal_ui_url.rstrip("/")


def test_sqlite_store_has_no_secret_columns(runtime):
    names = {c["name"] for t in sa_inspect(runtime.store.engine).get_table_names()
             for c in sa_inspect(runtime.store.engine).get_columns(t)}
    assert not names & {"token", "access_token", "refresh_token", "app_secret", "client_secret", "password"}
    assert sqlite3.sqlite_version
