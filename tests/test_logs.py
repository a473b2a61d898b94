"""Logging: one structured line per provider call (DEBUG ok, WARNING configuration), text or JSON format."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.models import PhoneNumberInput, SendTextInput
from core.logs import JsonFormatter, TextFormatter, configure_logging
from tests import seed


def calls(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "osi.pipeline"]


async def test_every_provider_call_is_one_structured_line(runtime, sandbox, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="osi.pipeline")
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    await acts.send_text(SendTextInput(organization_id=wa.organization_id, to="+16505551234", text="hi"))
    await acts.get_phone_number(PhoneNumberInput(organization_id=wa.organization_id))
    ok = [r.osi for r in calls(caplog) if r.levelno == logging.DEBUG]  # type: ignore[attr-defined]
    assert [(f["provider"], f["method"], f["status"]) for f in ok[-2:]] == [("whatsapp", "POST", 200),
                                                                             ("whatsapp", "GET", 200)]
    assert ok[-2]["action"] == "whatsapp.send_text" and ok[-2]["organization_id"] == wa.organization_id
    assert ok[-1]["path"] == f"/whatsapp/v23.0/{wa.phone_number_id}" and "?" not in ok[-1]["path"]

    bad = await seed.whatsapp_connection(runtime, sandbox.url)
    async with httpx.AsyncClient() as http:  # Meta expires the token: 401 / 190, a configuration error
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": bad.token})
    with pytest.raises(ApplicationError):
        await WhatsAppActivities(runtime).get_phone_number(PhoneNumberInput(organization_id=bad.organization_id))
    failed = [r for r in calls(caplog) if r.levelno == logging.WARNING][-1]
    assert (failed.osi["error_class"], failed.osi["status"], failed.osi["code"]) == (  # type: ignore[attr-defined]
        "ConfigurationError", 401, 190)
    assert bad.token not in caplog.text and wa.token not in caplog.text


def record(**fields) -> logging.LogRecord:
    r = logging.LogRecord("osi.pipeline", logging.INFO, __file__, 1, "provider call failed: %s", ("nope",), None)
    r.osi = fields  # type: ignore[attr-defined]
    return r


def test_json_and_text_formats() -> None:
    doc = json.loads(JsonFormatter().format(record(provider="slack", status=429, retry_after=1.5)))
    assert doc["message"] == "provider call failed: nope" and doc["level"] == "INFO"
    assert (doc["provider"], doc["status"], doc["retry_after"]) == ("slack", 429, 1.5)
    line = TextFormatter("%(levelname)s %(message)s").format(record(provider="slack", code=None, status=429))
    assert line == "INFO provider call failed: nope provider=slack status=429"


def test_configure_logging_sets_level_and_format() -> None:
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    try:
        configure_logging("debug", "json")
        assert root.level == logging.DEBUG and isinstance(root.handlers[0].formatter, JsonFormatter)
        assert logging.getLogger("httpcore").level == logging.INFO  # per-request library chatter stays out
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_secret_shapes_are_redacted_and_access_lines_lose_their_query() -> None:
    import io

    from core.logs import install_filters

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install_filters(handler)
    log = logging.getLogger("osi.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    secrets_ = ["xoxb-123456789012-abcdefghijkl", "xoxe.xoxp-1-abcdefghijkl", "EAAG" + "a1" * 20,
                "ya29.a0AfH6SMBexample_token", "whsec_" + "s" * 20, "osk_" + "k" * 30]
    try:
        for s in secrets_:
            log.warning("failed with %s", s)
        log.warning("header Authorization: Bearer abc.def.ghi-123")
        access = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                                   ("1.2.3.4:5", "GET", "/webhooks/whatsapp/c1?hub.verify_token=sekrit", "1.1", 200),
                                   None)
        handler.handle(access)
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    for s in secrets_:
        assert s.split("-")[0] not in out or s not in out
    assert "abc.def.ghi-123" not in out and "sekrit" not in out
    assert "/webhooks/whatsapp/c1?[query removed]" in out and out.count("[redacted]") >= 7
