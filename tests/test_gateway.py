"""Gateway: liveness, readiness, and the WhatsApp webhook's verification rules."""

from __future__ import annotations

import json

import httpx

from activities.whatsapp.webhooks import sign, verify_signature
from tests import seed


def test_meta_published_signature_vector() -> None:
    expected = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert sign("secret", b"test") == expected
    assert verify_signature("secret", b"test", expected)
    assert verify_signature("secret", b"test", expected.upper().replace("SHA256=", "sha256="))
    for bad in (None, "", "sha256=", "md5=abc", expected[:-1] + "0", "sha256=zz"):
        assert not verify_signature("secret", b"test", bad)
    assert not verify_signature("secret", b"test ", expected)  # the exact bytes, not a re-serialization
    assert not verify_signature("", b"test", expected)


async def test_health_and_readiness(gateway) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{gateway}/healthz")).json() == {"status": "ok"}
        ready = await http.get(f"{gateway}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"temporal": "ok", "vault": "ok", "store": "ok"}


async def test_whatsapp_challenge_and_signature(gateway, runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    url = f"{gateway}/webhooks/whatsapp/{wa.connection_id}"
    async with httpx.AsyncClient() as http:
        ok = await http.get(url, params={"hub.mode": "subscribe", "hub.verify_token": wa.verify_token,
                                         "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        bad = await http.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                          "hub.challenge": "1"})
        assert bad.status_code == 403
        body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
        assert (await http.post(url, content=body)).status_code == 401
        assert (await http.post(url, content=body, headers={"X-Hub-Signature-256": sign("wrong", body)})
                ).status_code == 401
        assert (await http.post(f"{gateway}/webhooks/whatsapp/unknown-connection", content=body,
                                headers={"X-Hub-Signature-256": sign(wa.app_secret, body)})).status_code == 401
        good = await http.post(url, content=body, headers={"X-Hub-Signature-256": sign(wa.app_secret, body)})
        assert good.status_code == 200
        junk = b"{not json"
        assert (await http.post(url, content=junk, headers={"X-Hub-Signature-256": sign(wa.app_secret, junk)})
                ).status_code == 400
