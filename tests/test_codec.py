"""Codec access with least privilege: admin keys as codec keys, organization-scoped decoding, the Web UI's way in."""

from __future__ import annotations

import base64
import json
import os
import uuid

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from tests import seed
from tests.prod_gateway import prod_gateway as prod_gateway

ENC = base64.b64encode(b"binary/encrypted").decode()


def b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(doc: object) -> dict:
    return {"metadata": {"encoding": b64("json/plain")}, "data": b64(json.dumps(doc))}


@pytest.fixture
async def keys(runtime) -> dict[str, str]:
    a, b = f"org-a-{uuid.uuid4().hex[:6]}", f"org-b-{uuid.uuid4().hex[:6]}"
    return {"a_org": a, "b_org": b,
            "a": await runtime.store.run(runtime.store.issue_admin_key, a, "codec-a"),
            "b": await runtime.store.run(runtime.store.issue_admin_key, b, "codec-b")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_no_key_or_a_garbage_key_is_401(prod_gateway) -> None:
    body = {"payloads": [plain({"a": 1})]}
    async with httpx.AsyncClient(base_url=prod_gateway.url) as http:
        for headers in ({}, bearer("garbage"), {"Authorization": "Basic Zm9vOmJhcg=="}, bearer("osk_" + "x" * 43)):
            for op in ("encode", "decode"):
                r = await http.post(f"/codec/{op}", json=body, headers=headers)
                assert r.status_code == 401, (op, headers, r.text)


async def test_an_organization_key_decodes_only_its_own_payloads(prod_gateway, keys) -> None:
    a_doc = {"organization_id": keys["a_org"], "to": "+16505550100", "text": "for A"}
    b_doc = {"organizationId": keys["b_org"], "text": "for B"}
    async with httpx.AsyncClient(base_url=prod_gateway.url) as http:
        op = bearer(prod_gateway.operator_key)
        enc = (await http.post("/codec/encode", json={"payloads": [plain(a_doc), plain(b_doc), plain([1, 2])]},
                               headers=op)).json()["payloads"]
        assert all(p["metadata"]["encoding"] == ENC for p in enc)
        assert all(keys["a_org"] not in base64.b64decode(p["data"]).decode("latin-1") for p in enc)  # not clear text
        dec_a = (await http.post("/codec/decode", json={"payloads": enc}, headers=bearer(keys["a"]))).json()
        assert dec_a["payloads"][0] == plain(a_doc)
        assert dec_a["payloads"][1] == enc[1] and dec_a["payloads"][2] == enc[2]  # B's and operator-only: still sealed
        dec_b = (await http.post("/codec/decode", json={"payloads": enc}, headers=bearer(keys["b"]))).json()
        assert dec_b["payloads"][0] == enc[0] and dec_b["payloads"][1] == plain(b_doc)
        dec_op = (await http.post("/codec/decode", json={"payloads": enc}, headers=op)).json()
        assert dec_op["payloads"] == [plain(a_doc), plain(b_doc), plain([1, 2])]
        # An organization key encodes for itself (its organization goes inside) and never for another one.
        mine = (await http.post("/codec/encode", json={"payloads": [plain({"x": 1})]},
                                headers=bearer(keys["a"]))).json()
        assert (await http.post("/codec/decode", json=mine, headers=bearer(keys["a"]))).json()["payloads"] == [
            plain({"x": 1})]
        assert (await http.post("/codec/decode", json=mine, headers=bearer(keys["b"]))).json() == mine
        r = await http.post("/codec/encode", json={"payloads": [plain(b_doc)]}, headers=bearer(keys["a"]))
        assert r.status_code == 403


async def test_garbage_is_400(prod_gateway) -> None:
    op = bearer(prod_gateway.operator_key)
    bad = [
        {"payloads": [{"metadata": {"encoding": ENC, "encryption-key-id": b64("vault:v1:" + "A" * 40)},
                       "data": b64(os.urandom(64))}]},
        {"payloads": [{"metadata": {"encoding": ENC}, "data": b64(os.urandom(64))}]},
        {"payloads": [{"metadata": {"encoding": ENC, "encryption-key-id": b64("not-vault")}, "data": b64("x")}]},
        {"payloads": "nope"},
        {"payloads": [{"metadata": {"encoding": 5}}]},
    ]
    async with httpx.AsyncClient(base_url=prod_gateway.url) as http:
        good = (await http.post("/codec/encode", json={"payloads": [plain({"a": 1})]}, headers=op)).json()
        tampered = json.loads(json.dumps(good))
        data = bytearray(base64.b64decode(tampered["payloads"][0]["data"]))
        data[-1] ^= 1
        tampered["payloads"][0]["data"] = b64(bytes(data))
        for body in [*bad, tampered]:
            r = await http.post("/codec/decode", json=body, headers=op)
            assert r.status_code == 400, (body, r.text)
            assert "error" in r.json()
        for raw in (b"\xff\xfe\x00garbage", b"{not json", b"[" * 100_000):
            r = await http.post("/codec/decode", content=raw, headers={**op, "Content-Type": "application/json"})
            assert r.status_code == 400, (raw[:10], r.text)


async def test_the_web_ui_path(prod_gateway, keys) -> None:
    """What the Temporal Web UI does with "pass access token": a CORS preflight from its origin, then POST /decode
    with `Authorization: Bearer <access token>` and `X-Namespace`."""
    ui = prod_gateway.settings.temporal_ui_url.rstrip("/")
    async with httpx.AsyncClient(base_url=prod_gateway.url) as http:
        pre = await http.options("/codec/decode", headers={
            "Origin": ui, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == ui
        assert "POST" in pre.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-namespace"} <= allowed
        assert pre.headers["access-control-allow-credentials"] == "true"
        enc = (await http.post("/codec/encode", json={"payloads": [plain({"organization_id": keys["a_org"]})]},
                               headers=bearer(prod_gateway.operator_key))).json()
        ns = prod_gateway.settings.namespace()
        r = await http.post("/codec/decode", json=enc, headers={
            "Origin": ui, "Content-Type": "application/json", "X-Namespace": ns, **bearer(keys["a"])})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ui
        assert r.json()["payloads"] == [plain({"organization_id": keys["a_org"]})]
        denied = await http.post("/codec/decode", json=enc, headers={"Origin": ui, "X-Namespace": ns})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ui
        other = await http.post("/codec/decode", json=enc, headers={"X-Namespace": "other", **bearer(keys["a"])})
        assert other.status_code == 400


async def test_history_of_one_organization_is_readable_only_with_its_key(
        client, worker, runtime, sandbox, task_queue, prod_gateway) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    key_a = await runtime.store.run(runtime.store.issue_admin_key, wa.organization_id, "history-a")
    key_b = await runtime.store.run(runtime.store.issue_admin_key, "someone-else", "history-b")
    wid = f"codec-{uuid.uuid4().hex}"
    await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to="+16505550123", text="only for A"), id=wid, task_queue=task_queue,
        result_type=SendWhatsAppMessageResult)
    hist = await client.get_workflow_handle(wid).fetch_history()
    start = hist.events[0].workflow_execution_started_event_attributes.input.payloads
    body = {"payloads": [json.loads(json_format.MessageToJson(p)) for p in start]}
    async with httpx.AsyncClient(base_url=prod_gateway.url) as http:
        a = (await http.post("/codec/decode", json=body, headers=bearer(key_a))).json()["payloads"]
        b = (await http.post("/codec/decode", json=body, headers=bearer(key_b))).json()["payloads"]
    assert "only for A" in base64.b64decode(a[0]["data"]).decode()
    assert b == body["payloads"]
    assert json_format.ParseDict(b[0], Payload()).metadata["encoding"] == b"binary/encrypted"


async def test_a_workflows_results_belong_to_the_organization_its_input_named(runtime, settings) -> None:
    """Temporal hands the codec the workflow id: a result or failure without an `organization_id` of its own is
    scoped to the organization the workflow's input named, so that organization's key reads it (and no other)."""
    from temporalio.converter import WorkflowSerializationContext

    from vault.codec import VaultEnvelopeCodec

    def payload(doc: object) -> Payload:
        return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(doc).encode())

    codec = VaultEnvelopeCodec(runtime.vault, settings.vault_transit_key)
    wf = f"wf-{uuid.uuid4().hex}"
    worker_side = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id=wf))
    started = await codec.encode_scoped([payload({"organization_id": "org-a", "to": "+1"})], "org-a")
    await worker_side.decode(started)  # the worker reads the input: the workflow is org-a's
    result = await worker_side.encode([payload({"delivered": True})])
    assert json.loads((await codec.decode_scoped(result, "org-a"))[0].data) == {"delivered": True}
    assert (await codec.decode_scoped(result, "org-b"))[0].metadata["encoding"] == b"binary/encrypted"
    # A workflow whose input named no organization keeps the operator-only default.
    other = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id=f"wf-{uuid.uuid4().hex}"))
    unscoped = await other.encode([payload({"delivered": True})])
    assert (await codec.decode_scoped(unscoped, "org-a"))[0].metadata["encoding"] == b"binary/encrypted"
    assert json.loads((await codec.decode_scoped(unscoped, None))[0].data) == {"delivered": True}
