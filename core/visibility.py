"""What an operator sees in the Temporal Web UI: search attributes, a summary line, and honest outcomes.

Every workflow gets, without any code of its own, through `VisibilityInterceptor` (the worker installs it):
`OsiOrganization`, `OsiConnection`, `OsiIntegration` (from its input) and `OsiOutcome` (`running` while it
runs, then `succeeded`, `partial`, `failed` or `cancelled`), a `summary` memo and the current-details line.
A workflow that lets an activity or child failure escape ends Failed with our typed ApplicationError (its
`type` is the taxonomy class), not a bare ActivityError. Workflows that act on several targets call
`raise_if_all_failed` so that "every recipient failed" is a Failed workflow, not a green one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from core.errors import ERROR_TYPES, ErrorClass, error_from_details

ORGANIZATION = SearchAttributeKey.for_keyword("OsiOrganization")
CONNECTION = SearchAttributeKey.for_keyword("OsiConnection")
INTEGRATION = SearchAttributeKey.for_keyword("OsiIntegration")
OUTCOME = SearchAttributeKey.for_keyword("OsiOutcome")
# Name -> Temporal type, for `temporal operator search-attribute create` and the dev server's flags.
SEARCH_ATTRIBUTES: dict[str, str] = {k.name: "Keyword" for k in (ORGANIZATION, CONNECTION, INTEGRATION, OUTCOME)}

Outcome = Literal["running", "succeeded", "partial", "failed", "cancelled"]
# Result fields that count targets the action reached (held messages are waiting, not failed).
SUCCESS_COUNTS = ("sent", "created", "delivered", "held", "succeeded", "checked")


def outcome_of(result: Any) -> Outcome:
    """The outcome of a completed workflow from its result: an explicit `outcome` field wins; otherwise a
    `failed` count with nothing reached is `failed`, with something reached `partial`."""
    explicit = getattr(result, "outcome", None) if not isinstance(result, Mapping) else result.get("outcome")
    if explicit in ("succeeded", "partial", "failed", "cancelled"):
        return explicit
    failed = _count(result, "failed")
    if not failed:
        return "succeeded"
    reached = sum(_count(result, name) for name in SUCCESS_COUNTS)
    return "partial" if reached else "failed"


def _count(result: Any, name: str) -> int:
    value = result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def typed_failure(err: BaseException) -> ApplicationError:
    """A non-retryable ApplicationError whose `type` is the taxonomy class of `err` (activity or child
    failures walked to their classified cause), so the Web UI shows the error type and its details."""
    details = error_from_details(err) or {"error_class": ErrorClass.PERMANENT.value, "message": str(err)}
    kind = str(details.get("error_class") or ErrorClass.PERMANENT.value)
    return ApplicationError(str(details.get("message") or err), details,
                            type=kind if kind in ERROR_TYPES else ErrorClass.PERMANENT.value, non_retryable=True)


def raise_if_all_failed(*, reached: int, failed: int, errors: Sequence[Mapping[str, Any] | None], what: str,
                        result: Any = None) -> None:
    """End the workflow Failed when every target failed (`reached == 0 and failed > 0`).

    The error's type is the taxonomy class the failures share (ConfigurationError when any needs an
    administrator, else the most common one); its details carry the first errors and the result, so the
    caller still sees each target's outcome.
    """
    if reached or not failed:
        return
    found = [dict(e) for e in errors if e]
    classes = Counter(str(e.get("error_class")) for e in found if e.get("error_class") in ERROR_TYPES)
    if ErrorClass.CONFIGURATION.value in classes:
        kind = ErrorClass.CONFIGURATION.value
    elif classes:
        kind = classes.most_common(1)[0][0]
    else:
        kind = ErrorClass.PERMANENT.value
    first = found[0] if found else {}
    if failed == 1:
        message = f"{what}: {first.get('message') or 'failed'}"
    else:
        message = f"{what}: all {failed} failed" + (f"; first: {first.get('message')}" if first.get("message") else "")
    details: dict[str, Any] = {"error_class": kind, "code": first.get("code"), "message": message,
                               "failed": failed, "errors": found[:10]}
    if result is not None:
        details["result"] = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
    raise ApplicationError(message, details, type=kind, non_retryable=True)


def _field(arg: Any, *names: str) -> str | None:
    for name in names:
        value = arg.get(name) if isinstance(arg, Mapping) else getattr(arg, name, None)
        if isinstance(value, str) and value:
            return value
    return None


class _VisibilityInbound(WorkflowInboundInterceptor):
    integrations: Mapping[str, str] = {}
    upsert_attributes: bool = True

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        arg = input.args[0] if input.args else None
        org = _field(arg, "organization_id")
        conn = _field(arg, "connection", "connection_name")
        integration = _field(arg, "integration_type") or self.integrations.get(info.workflow_type)
        scope = " · ".join(x for x in (org and f"org {org}", integration and conn and f"{integration}/{conn}") if x)
        head = f"{info.workflow_type}" + (f" · {scope}" if scope else "")
        pairs: list[SearchAttributeUpdate[str]] = [OUTCOME.value_set("running")]
        pairs += [key.value_set(v) for key, v in ((ORGANIZATION, org), (CONNECTION, conn),
                                                   (INTEGRATION, integration)) if v]
        self._mark(pairs, head, "running")
        try:
            result = await super().execute_workflow(input)
        except (ActivityError, ChildWorkflowError) as err:
            typed = typed_failure(err)
            self._mark([OUTCOME.value_set("failed")], head, f"failed: {typed.type}: {typed.message}")
            raise typed from err
        except asyncio.CancelledError:
            self._mark([OUTCOME.value_set("cancelled")], head, "cancelled")
            raise
        except workflow.ContinueAsNewError:
            raise
        except Exception as err:
            # ApplicationError, or a failure exception type of the workflow (bad input): it ends Failed. A bug
            # fails the workflow task instead, and then these commands are discarded with it.
            kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
            message = err.message if isinstance(err, FailureError) else str(err).splitlines()[0] if str(err) else ""
            self._mark([OUTCOME.value_set("failed")], head, f"failed: {kind}: {message}")
            raise
        outcome = outcome_of(result)
        self._mark([OUTCOME.value_set(outcome)], head, outcome + _counts(result))
        return result

    def _mark(self, pairs: Sequence[SearchAttributeUpdate[str]], head: str, state: str) -> None:
        line = f"{head} — {state}"[:500]
        if self.upsert_attributes:
            workflow.upsert_search_attributes(list(pairs))
        workflow.upsert_memo({"summary": line})
        workflow.set_current_details(line)


def _counts(result: Any) -> str:
    parts = [f"{n} {name}" for name in (*SUCCESS_COUNTS, "failed", "skipped", "cancelled")
             if (n := _count(result, name))]
    return f" ({', '.join(parts)})" if parts else ""


class VisibilityInterceptor(Interceptor):
    """Installs `_VisibilityInbound` on every workflow of the worker.

    `integrations` maps workflow type names to the integration type of the plugin they belong to (an input's
    own `integration_type` wins); `upsert_attributes` is False when the namespace lacks the search attributes
    (upserting unknown ones would fail every workflow task), so only memo and details are set.
    """

    def __init__(self, integrations: Mapping[str, str], *, upsert_attributes: bool = True) -> None:
        self._inbound = type("VisibilityInbound", (_VisibilityInbound,),
                             {"integrations": dict(integrations), "upsert_attributes": upsert_attributes})

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput
                                   ) -> type[WorkflowInboundInterceptor] | None:
        return self._inbound


def search_query(*, organization: str | None = None, connection: str | None = None,
                 integration: str | None = None, outcome: str | None = None, workflow_type: str | None = None,
                 since: str | None = None) -> str:
    """A Temporal visibility query over our search attributes (what the README, diagnose and the dashboard
    link to). Values are quoted; `since` is an RFC 3339 instant."""
    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = [f"{key.name} = {q(v)}" for key, v in ((ORGANIZATION, organization), (CONNECTION, connection),
                                                    (INTEGRATION, integration), (OUTCOME, outcome)) if v]
    if workflow_type:
        parts.append(f"WorkflowType = {q(workflow_type)}")
    if since:
        parts.append(f"StartTime > {q(since)}")
    return " AND ".join(parts)


def attributes_of(attrs: TypedSearchAttributes) -> dict[str, str]:
    """Our search attributes of a workflow as a plain dict (CLI and dashboard)."""
    return {key.name: str(v) for key in (ORGANIZATION, CONNECTION, INTEGRATION, OUTCOME)
            if (v := attrs.get(key)) is not None}
