"""OpenSyte's contract (core.contract): one naming convention for every workflow input and result, OpenSyte's row
columns ignored, unknown fields refused by name, bad input as PermanentError invalid_input, schemas that show it."""

from __future__ import annotations

import inspect
import json
import typing

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from activities.calendar.model import CalendarActionInput, CreateCalendarEventResult
from activities.slack.models import SendSlackMessageInput, SendSlackMessageResult
from activities.whatsapp.models import Media, SendWhatsAppMessageInput
from core.contract import IGNORED_FIELDS, OPENSYTE_ROW_METADATA, ContractModel, WorkflowInput, contract_data_converter
from worker.schemas import input_schema, workflow_models

ROW = {"id": "clx9row", "actionId": "clx9node", "nodeId": "n1", "integrationId": "clx9int", "createdAt":
       "2031-03-01T08:00:00.000Z", "updatedAt": "2031-03-01T08:00:00.000Z", "workflowId": "wf", "executionId": "e"}


def nested_models(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _types(field.annotation):
            if inspect.isclass(arg) and issubclass(arg, BaseModel):
                nested_models(arg, seen)
    return seen


def _types(tp: typing.Any) -> list[typing.Any]:
    args = typing.get_args(tp)
    return [tp] if not args else [t for a in args for t in _types(a)]


@pytest.mark.parametrize("name", sorted(workflow_models()))
def test_every_workflow_model_follows_the_contract(name: str) -> None:
    inp, res = workflow_models()[name]
    assert issubclass(inp, WorkflowInput), f"{name}'s input must derive from core.contract.WorkflowInput"
    for model in nested_models(inp) | (nested_models(res) if res else set()):
        assert issubclass(model, ContractModel), f"{model.__name__} (in {name}) must derive from ContractModel"
        assert all(f == f.lower() for f in model.model_fields), f"{model.__name__}: field names are snake_case"


def test_camel_case_and_snake_case_are_one_field() -> None:
    a = CalendarActionInput.model_validate({"organizationId": "o", "integrationType": "GOOGLE_CALENDAR", "title": "t",
                                            "startTime": "2031-01-01T10:00", "endTime": "2031-01-01T11:00",
                                            "isAllDay": False, "idempotencyKey": "k"})
    b = CalendarActionInput.model_validate({"organization_id": "o", "integration_type": "GOOGLE_CALENDAR",
                                            "title": "t", "start_time": "2031-01-01T10:00",
                                            "end_time": "2031-01-01T11:00", "is_all_day": False,
                                            "idempotency_key": "k"})
    assert a == b and a.start_time == "2031-01-01T10:00"
    with pytest.raises(ValidationError, match="start_time and startTime name the same field"):
        CalendarActionInput.model_validate({"organization_id": "o", "integration_type": "X", "title": "t",
                                            "start_time": "a", "startTime": "a", "end_time": "b"})


def test_an_opensyte_row_is_accepted_as_it_is_and_anything_else_is_refused_by_name() -> None:
    row = {**ROW, "organizationId": "o", "toNumbers": "+16505551234", "messageType": "TEXT", "textMessage": "hi",
           "businessAccountId": "waba", "action_id": "snake too"}
    inp = SendWhatsAppMessageInput.model_validate(row)
    assert inp.to_numbers == ["+16505551234"] and inp.text_message == "hi"
    with pytest.raises(ValidationError) as exc:
        SendWhatsAppMessageInput.model_validate({**row, "colour": "blue"})
    assert [e["loc"] for e in exc.value.errors()] == [("colour",)]
    assert "integration_id" in IGNORED_FIELDS and set(OPENSYTE_ROW_METADATA) <= IGNORED_FIELDS
    # A model with its own `id` keeps it (a media object's id is the uploaded media).
    assert Media.model_validate({"id": "1234"}).id == "1234"


async def test_results_are_snake_case_on_the_wire() -> None:
    res = SendSlackMessageResult(delivered=True, route="slack", notification_id=7, whatsapp_message_ids=["w"])
    payload = contract_data_converter.payload_converter.to_payloads([res])[0]
    # Fields that default to null and are null are left out (core/payloads.py; optional in the result schema).
    assert json.loads(payload.data) == {"delivered": True, "route": "slack", "fallback": False,
                                        "outcome": "succeeded", "whatsapp_message_ids": ["w"],
                                        "notification_id": 7, "attempts": []}


def test_a_validation_error_becomes_permanent_invalid_input_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        SendSlackMessageInput.model_validate({"organizationId": "o", "channel": "general", "message": "x",
                                              "threadTs": "nope"})
    failure = Failure()
    contract_data_converter.failure_converter.to_failure(exc.value, contract_data_converter.payload_converter,
                                                         failure)
    err = contract_data_converter.failure_converter.from_failure(failure, contract_data_converter.payload_converter)
    assert isinstance(err, ApplicationError) and err.type == "PermanentError" and err.non_retryable
    details = err.details[0]
    assert details["code"] == "invalid_input" and details["error_class"] == "PermanentError"
    assert {e["field"] for e in details["details"]["errors"]} == {"channel", "thread_ts"}
    assert "'general' is not a Slack conversation ID" in err.message
    assert all("input" not in e for e in details["details"]["errors"])  # values are not echoed back


def test_the_schema_shows_both_spellings_every_shape_and_the_limits() -> None:
    schema = input_schema(CalendarActionInput, ["GOOGLE_CALENDAR", "OUTLOOK_CALENDAR"])
    snake, camel = (schema["$defs"][r["$ref"].rsplit("/", 1)[1]] for r in schema["anyOf"])
    assert "start_time" in snake["properties"] and "startTime" in camel["properties"]
    assert camel["properties"]["integrationType"]["enum"] == ["GOOGLE_CALENDAR", "OUTLOOK_CALENDAR"]
    assert {"id", "actionId", "createdAt"} <= set(camel["properties"]) and "action_id" in snake["properties"]
    attendee = snake["properties"]["attendees"]
    assert attendee["maxItems"] == 500 and {"type": "string"} in attendee["items"]["anyOf"]
    reminders = next(s for s in snake["properties"]["reminders"]["anyOf"] if s.get("type") == "array")
    assert {"type": "integer", "minimum": 0, "maximum": 40320, "description": "minutes before"} in \
        reminders["items"]["anyOf"]
    bulk = input_schema(workflow_models()["BulkSendWhatsAppTemplate"][0])
    props = bulk["$defs"]["BulkSendWhatsAppTemplateInput"]["properties"]
    assert (props["recipients"]["minItems"], props["recipients"]["maxItems"]) == (1, 10_000)
    assert (props["batch_size"]["maximum"], props["concurrency"]["maximum"], props["max_parallel_batches"]["maximum"]
            ) == (1000, 500, 8)
    assert CreateCalendarEventResult.model_json_schema(mode="serialization")["properties"]["moved_from"]
