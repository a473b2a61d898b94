"""What an operator sees in the Temporal Web UI: search attributes, the summary, typed failures, no null padding."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.slack.models import SendSlackMessageInput
from activities.slack.seed import create_workspace, direct_connection, ensure_app
from activities.whatsapp.models import SendWhatsAppMessageInput, SendWhatsAppMessageResult
from core.payloads import CompactJSONPayloadConverter
from core.visibility import attributes_of, outcome_of, raise_if_all_failed, search_query
from tests import seed


class _Result(BaseModel):
    sent: int = 0
    failed: int = 0
    held: int = 0


def test_outcome_of_counts_and_explicit_outcomes() -> None:
    assert outcome_of(_Result(sent=2)) == "succeeded"
    assert outcome_of(_Result(sent=1, failed=1)) == "partial"
    assert outcome_of(_Result(held=1, failed=1)) == "partial"  # held is waiting, not failed
    assert outcome_of(_Result(failed=2)) == "failed"
    assert outcome_of({"outcome": "partial", "failed": 0}) == "partial"
    assert outcome_of(None) == "succeeded"


def test_raise_if_all_failed_types_the_failure() -> None:
    raise_if_all_failed(reached=1, failed=3, errors=[], what="x")  # something reached: no failure
    raise_if_all_failed(reached=0, failed=0, errors=[], what="x")  # nothing to do: no failure
    errors: list[dict[str, Any] | None] = [
        {"error_class": "PermanentError", "code": 131026, "message": "undeliverable"},
        {"error_class": "ConfigurationError", "code": "connection_not_found", "message": "no connection"}, None]
    with pytest.raises(ApplicationError) as exc:
        raise_if_all_failed(reached=0, failed=2, errors=errors, what="send", result=_Result(failed=2))
    err = exc.value
    # An administrator must act on one of them: the workflow fails as a configuration error.
    assert err.type == "ConfigurationError" and err.non_retryable
    assert err.message == "send: all 2 failed; first: undeliverable"
    assert err.details[0]["result"] == {"sent": 0, "failed": 2, "held": 0}
    assert len(err.details[0]["errors"]) == 2
    with pytest.raises(ApplicationError) as exc:
        raise_if_all_failed(reached=0, failed=1, errors=[errors[0]], what="send")
    assert exc.value.type == "PermanentError"


def test_search_query_quotes_values() -> None:
    assert search_query(organization="acme", outcome="failed", workflow_type="SendWhatsAppMessage",
                        since="2030-01-01T00:00:00Z") == (
        "OsiOrganization = 'acme' AND OsiOutcome = 'failed' AND WorkflowType = 'SendWhatsAppMessage' AND "
        "StartTime > '2030-01-01T00:00:00Z'")
    assert search_query(organization="o'brien") == "OsiOrganization = 'o\\'brien'"


class _Nested(BaseModel):
    required_maybe: str | None  # required, may be None: must stay in the JSON
    note: str | None = None
    kind: str | None = "text"  # a non-None default: None must stay explicit


class _Outer(BaseModel):
    items: list[_Nested]
    by_key: dict[str, _Nested] = {}
    extra: dict[str, Any] | None = None


def test_payloads_keep_required_and_non_default_nones() -> None:
    conv = CompactJSONPayloadConverter()
    value = _Outer(items=[_Nested(required_maybe=None, kind=None), _Nested(required_maybe="x", note="n")],
                   by_key={"a": _Nested(required_maybe=None)})
    payload = conv.to_payload(value)
    assert isinstance(payload, Payload)
    assert json.loads(payload.data) == {"items": [{"required_maybe": None, "kind": None},
                                                  {"required_maybe": "x", "note": "n", "kind": "text"}],
                                        "by_key": {"a": {"required_maybe": None, "kind": "text"}}}
    assert conv.from_payload(payload, _Outer) == value


def test_payloads_leave_out_nulls_and_read_back_the_same() -> None:
    conv = CompactJSONPayloadConverter()
    inp = SendWhatsAppMessageInput(organization_id="acme", to="+16505551234", text="hi",
                                   variables={"name": None})
    payload = conv.to_payload(inp)
    assert isinstance(payload, Payload)
    doc = json.loads(payload.data)
    assert "template" not in doc and "mediaUrl" not in doc and None not in doc.values()
    assert doc["variables"] == {"name": None}  # values inside plain dicts are kept
    assert conv.from_payload(payload, SendWhatsAppMessageInput) == inp


async def _described(client: Client, workflow_id: str) -> tuple[dict[str, str], str]:
    desc = await client.get_workflow_handle(workflow_id).describe()
    return attributes_of(desc.typed_search_attributes), str(await desc.memo_value("summary", ""))


async def _listed(client: Client, query: str, workflow_id: str) -> list[str]:
    """Visibility is eventually consistent: wait until the query lists the workflow."""
    for _ in range(100):
        ids = [w.id async for w in client.list_workflows(query)]
        if workflow_id in ids:
            return ids
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} not listed by {query!r}")


async def test_a_failed_slack_send_is_failed_typed_and_searchable(client, worker, runtime, sandbox, task_queue,
                                                                 settings):
    await ensure_app(runtime, sandbox.url, settings.gateway_public_url)
    ws = await create_workspace(sandbox.url, users={"ann": {"email": "ann@example.com"}},
                                channels={"old": {"is_archived": True}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    await direct_connection(runtime, sandbox.url, org, ws)
    wf_id = f"vis-slack-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as exc:
        await client.execute_workflow("SendSlackMessage", SendSlackMessageInput(
            organization_id=org, channel=ws.channels["old"], message="x"), id=wf_id, task_queue=task_queue)
    assert isinstance(exc.value.cause, ApplicationError) and exc.value.cause.type == "PermanentError"
    attrs, summary = await _described(client, wf_id)
    assert attrs == {"OsiOrganization": org, "OsiConnection": "default", "OsiIntegration": "SLACK",
                     "OsiOutcome": "failed"}
    assert summary.startswith(f"SendSlackMessage · org {org} · SLACK/default — failed: PermanentError")
    # The README's query: every failed send of one organization.
    assert await _listed(client, search_query(organization=org, outcome="failed"), wf_id) == [wf_id]


async def test_an_activity_failure_ends_failed_with_our_type(client, worker, runtime, sandbox, task_queue):
    """A calendar action on a connection that does not exist: ConfigurationError, not a bare ActivityError."""
    org = f"org_{uuid.uuid4().hex[:10]}"
    wf_id = f"vis-cal-{uuid.uuid4().hex[:8]}"
    with pytest.raises(WorkflowFailureError) as exc:
        await client.execute_workflow("CancelCalendarEvent", {
            "organization_id": org, "integration_type": "GOOGLE_CALENDAR", "connection": "work",
            "eventId": "e1"}, id=wf_id, task_queue=task_queue)
    cause = exc.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ConfigurationError"
    assert cause.details[0]["code"] == "connection_not_found"
    attrs, _ = await _described(client, wf_id)
    assert attrs == {"OsiOrganization": org, "OsiConnection": "work", "OsiIntegration": "GOOGLE_CALENDAR",
                     "OsiOutcome": "failed"}


async def test_partial_whatsapp_send_and_no_null_padding(client, worker, runtime, sandbox, task_queue):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    wf_id = f"vis-wa-{uuid.uuid4().hex[:8]}"
    res = await client.execute_workflow("SendWhatsAppMessage", SendWhatsAppMessageInput(
        organization_id=wa.organization_id, to=["12", "+16505551234"], text="hi"), id=wf_id,
        task_queue=task_queue, result_type=SendWhatsAppMessageResult)
    assert (res.sent, res.failed) == (1, 1)
    attrs, summary = await _described(client, wf_id)
    assert attrs["OsiOutcome"] == "partial" and attrs["OsiIntegration"] == "WHATSAPP_BUSINESS"
    assert summary.endswith("partial (1 sent, 1 failed)")
    # The README's "everything that went wrong" query.
    assert wf_id in await _listed(client, f"OsiOrganization = '{wa.organization_id}' AND OsiOutcome IN "
                                          "('failed', 'partial')", wf_id)
    hist = await client.get_workflow_handle(wf_id).fetch_history()
    started = hist.events[0].workflow_execution_started_event_attributes.input.payloads
    codec = client.data_converter.payload_codec
    decoded = await codec.decode(list(started)) if codec else list(started)
    doc = json.loads(decoded[0].data)
    assert doc == {"organization_id": wa.organization_id, "connection": "default", "to": ["12", "+16505551234"],
                   "text": "hi", "preview_url": False, "contacts": [], "hold_when_limited": True}
