"""OpenSyte's contract: one naming convention for every workflow input and result, and bad input as our error."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasGenerator, BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter

from core.errors import PermanentError
from core.payloads import CompactPayloadConverter

# OpenSyte's action rows (WhatsAppAction, SlackAction, CalendarAction) and the WorkflowNode/WorkflowExecution
# rows around them carry these bookkeeping columns; a row handed over as it is must not fail on them.
OPENSYTE_ROW_METADATA: tuple[str, ...] = (
    "id", "actionId", "nodeId", "workflowId", "workflowNodeId", "integrationId", "executionId",
    "workflowExecutionId", "nodeExecutionId", "triggerId", "templateId", "createdAt", "updatedAt",
    "createdById", "updatedById",
)
# The same names in snake_case are ignored too (action_id, created_at, ...): one convention, both spellings.
IGNORED_FIELDS: frozenset[str] = frozenset(OPENSYTE_ROW_METADATA) | {to_snake(n) for n in OPENSYTE_ROW_METADATA}


class ContractModel(BaseModel):
    """Every workflow input and result (and the models inside them).

    snake_case field names are canonical and the only names results are written with; on input each field
    is also accepted under its camelCase name (OpenSyte's Prisma columns: `organizationId`, `toNumbers`,
    `startTime`…). Anything else is refused with the field named (`extra="forbid"`).
    """

    model_config = ConfigDict(
        extra="forbid",
        # Validation-only aliases: serialization never uses them, whatever the converter's by_alias says.
        alias_generator=AliasGenerator(validation_alias=to_camel),
        validate_by_name=True,
        validate_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                alias = field.validation_alias
                if isinstance(alias, str) and alias != name and name in data and alias in data:
                    raise ValueError(f"{name} and {alias} name the same field; give one of them")
        return data


class WorkflowInput(ContractModel):
    """A workflow's input: an OpenSyte row may be handed over as it is, its bookkeeping columns ignored.

    Only names in `IGNORED_FIELDS` that are not fields of the model are dropped (a model with its own `id`
    keeps it); everything else still has to be a field.
    """

    ignored_fields: ClassVar[frozenset[str]] = IGNORED_FIELDS

    @model_validator(mode="before")
    @classmethod
    def _drop_row_metadata(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields) | {f.validation_alias for f in cls.model_fields.values()
                                         if isinstance(f.validation_alias, str)}
        drop = [k for k in data if k in cls.ignored_fields and k not in known]
        return {k: v for k, v in data.items() if k not in drop} if drop else data


def listify(value: Any) -> Any:
    """One string where a list of strings is expected (`"to": "+1650…"`) becomes a list of one; pair it with
    `BeforeValidator(listify, json_schema_input_type=<list type> | str)` so the schema says so."""
    return [value] if isinstance(value, str) else value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "input"


def invalid_input(err: ValidationError) -> PermanentError:
    """A pydantic refusal as our taxonomy: PermanentError `invalid_input`, each problem with its field.

    The rejected values are left out (they may be personal data); the messages name fields and limits.
    """
    problems = []
    for e in err.errors():
        loc = e["loc"]
        if e["type"] == "missing" and loc and isinstance(loc[-1], str):
            # Given under neither name: pydantic names the camelCase alias; the canonical name is snake_case.
            loc = (*loc[:-1], to_snake(loc[-1]))
        problems.append({"field": _location(loc), "type": e["type"], "message": e["msg"]})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:10])
    more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
    return PermanentError(f"invalid input for {err.title}: {summary}{more}", code="invalid_input",
                          details={"errors": problems})


class ContractFailureConverter(DefaultFailureConverter):
    """A ValidationError that fails a workflow (its input, an update) or an activity becomes PermanentError
    `invalid_input` with details, so every client (OpenSyte's TypeScript too) sees our error shape."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if isinstance(exception, ValidationError):
            converted = invalid_input(exception).to_application_error()
            converted.__traceback__ = exception.__traceback__
            exception = converted
        super().to_failure(exception, payload_converter, failure)


class EncodedContractFailureConverter(ContractFailureConverter):
    """The same, with failure messages and stack traces moved into encoded attributes (the payload codec
    encrypts them: a failure can name a customer)."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


# pydantic JSON payloads (snake_case, see ContractModel) and our failure shape; core.temporal adds the codec.
# Payloads as pydantic JSON without null padding (core/payloads.py), failures in our shape.
contract_data_converter: DataConverter = DataConverter(
    payload_converter_class=CompactPayloadConverter, failure_converter_class=ContractFailureConverter)
