"""Helpers shared by the WhatsApp tests (sandbox numbers, templates, inbound messages, polling) and the
sandbox's own fidelity checks: Meta's signature vector and the template list's paging."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from temporalio.testing import ActivityEnvironment

from activities.whatsapp.webhooks import sign, verify_signature
from core.runtime import Runtime
from tests import seed
from tests.activity_env import activity_env

T = TypeVar("T")

ORDER_TEMPLATE = {
    "name": "order_update", "language": "en_US", "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships on {{3}}. Total {{4}}."},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"},
                                        {"type": "QUICK_REPLY", "text": "Stop promotions"}]},
    ],
}
NAMED_TEMPLATE = {
    "name": "welcome_named", "language": "en_US", "category": "MARKETING", "parameter_format": "NAMED",
    "components": [{"type": "BODY", "text": "Welcome {{first_name}}! Your code is {{code}}."}],
}
PROMO_TEMPLATE = {
    "name": "spring_promo", "language": "en_US", "category": "MARKETING",
    "components": [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi {{1}}, 20% off this week."}],
}


def env(**info: Any) -> ActivityEnvironment:
    """An activity environment with its own activity id (the default idempotency key is built from it)."""
    return activity_env(**info)


async def wa_conn(runtime: Runtime, sandbox_url: str, gateway_url: str | None = None, *,
                  settings: dict[str, Any] | None = None, sandbox: dict[str, Any] | None = None,
                  templates: list[dict[str, Any]] = (), **kw: Any) -> seed.WhatsAppConn:  # type: ignore[assignment]
    """A sandbox-backed connection whose fake enforces the window like Meta does."""
    wa = await seed.whatsapp_connection(runtime, sandbox_url, gateway_url,
                                        sandbox_overrides={"enforce_window": True, "status_delay_ms": 5,
                                                           **(sandbox or {})},
                                        settings={"messaging_limit": "unlimited", **(settings or {})}, **kw)
    async with httpx.AsyncClient() as http:
        for t in templates:
            r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/templates", json={"waba_id": wa.waba_id, **t})
            r.raise_for_status()
    return wa


async def customer_writes(sandbox_url: str, wa: seed.WhatsAppConn, frm: str, text: str = "hello", **kw: Any
                          ) -> dict[str, Any]:
    """The sandbox delivers a signed inbound message (opens the window) to the connection's webhook."""
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{sandbox_url}/_sandbox/whatsapp/inbound",
                            json={"phone_number_id": wa.phone_number_id, "from": frm, "text": text, **kw})
        r.raise_for_status()
        return r.json()


async def sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{sandbox_url}/_sandbox/whatsapp/stats")).json()


async def eventually(fn: Callable[[], Awaitable[T] | T], ok: Callable[[T], bool], tries: int = 200,
                     delay: float = 0.05) -> T:
    """Poll until `ok(value)`; returns the last value either way so the assert shows it."""
    value: T
    for _ in range(tries):
        res = fn()
        value = await res if asyncio.iscoroutine(res) else res  # type: ignore[assignment]
        if ok(value):
            return value
        await asyncio.sleep(delay)
    return value


def wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sent_bodies(sandbox: Any, pid: str) -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.state.recorder.dump("whatsapp")
            if r["path"].endswith(f"/{pid}/messages") and r["status"] == 200 and isinstance(r["body"], dict)
            and r["body"].get("type")]


# ---- the fake's own fidelity --------------------------------------------------------------------
def test_meta_signature_vector_and_constant_time_rules() -> None:
    """Meta's published vector: key `secret`, body `test`."""
    header = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert sign("secret", b"test") == header
    assert verify_signature("secret", b"test", header)
    assert not verify_signature("secret", b"test\n", header)
    assert not verify_signature("secret", b"test", "sha1=" + header[7:])


async def test_template_list_is_paged_like_graph(runtime, sandbox) -> None:
    many = [{"name": f"t_{i:03d}", "language": "en_US", "components": [{"type": "BODY", "text": "x"}]}
            for i in range(7)]
    wa = await wa_conn(runtime, sandbox.url, templates=many)
    async with httpx.AsyncClient() as http:
        url = f"{sandbox.url}/whatsapp/v23.0/{wa.waba_id}/message_templates"
        auth = {"Authorization": f"Bearer {wa.token}"}
        first = (await http.get(url, params={"limit": 3}, headers=auth)).json()
        assert len(first["data"]) == 3 and first["paging"]["next"]
        names = [t["name"] for t in first["data"]]
        after = first["paging"]["cursors"]["after"]
        while after:
            page = (await http.get(url, params={"limit": 3, "after": after}, headers=auth)).json()
            names += [t["name"] for t in page["data"]]
            after = page["paging"]["cursors"]["after"] if page["paging"].get("next") else None
        assert names == ["hello_world"] + [t["name"] for t in many]
        other = await wa_conn(runtime, sandbox.url)
        denied = await http.get(url, headers={"Authorization": f"Bearer {other.token}"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == 200
