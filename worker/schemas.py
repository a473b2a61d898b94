"""JSON Schema export of every workflow's input and result: the contract OpenSyte's TypeScript types come from."""

from __future__ import annotations

import copy
import inspect
import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from core.contract import IGNORED_FIELDS, OPENSYTE_ROW_METADATA, WorkflowInput
from worker.registry import REGISTRATIONS, Registration, registry, workflows

CAMEL = "Camel"  # suffix of the camelCase twin of a definition


class _NoFieldTitles(GenerateJsonSchema):
    """Models keep their titles (they name the generated types); fields do not ("Organization Id" would
    become a TypeScript alias per field)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def workflow_models() -> dict[str, tuple[type[BaseModel], type[BaseModel] | None]]:
    """{workflow name: (input model, result model)} read from the run methods' annotations."""
    out: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {}
    for wf in workflows():
        defn = getattr(wf, "__temporal_workflow_definition")
        run = defn.run_fn
        hints = typing.get_type_hints(run)
        params = [p for p in inspect.signature(run).parameters if p != "self"]
        inp = hints.get(params[0]) if params else None
        res = hints.get("return")
        if inp is None or not (inspect.isclass(inp) and issubclass(inp, BaseModel)):
            raise TypeError(f"workflow {defn.name} must take one pydantic model")
        out[defn.name] = (inp, res if inspect.isclass(res) and issubclass(res, BaseModel) else None)
    return out


def integration_types(workflow_name: str, registrations: typing.Sequence[Registration] = REGISTRATIONS) -> list[str]:
    """OpenSyte integration types a workflow serves: its provider's, or every provider offering the capability
    its shared plugin is named after (the calendar workflows: every registered calendar provider)."""
    reg = registry(registrations)
    for r in registrations:
        if any(getattr(wf, "__temporal_workflow_definition").name == workflow_name for wf in r.workflows):
            if r.plugin.provider is not None:
                return [r.plugin.provider.integration_type]
            return sorted(reg.capabilities(r.plugin.name))
    return []


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _rename_refs(node: Any, renamed: set[str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rename_refs(v, renamed) for k, v in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[1] in renamed:
            out["$ref"] = f"{ref}{CAMEL}"
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renamed) for v in node]
    return node


def _metadata_properties(camel_only: bool) -> dict[str, Any]:
    """OpenSyte's row columns (camelCase as Prisma returns them; the snake_case spelling also ignores their
    snake_case forms)."""
    names = OPENSYTE_ROW_METADATA if camel_only else sorted(IGNORED_FIELDS)
    return {name: {"description": "OpenSyte row metadata: accepted and ignored"} for name in names}


def input_schema(model: type[BaseModel], types: list[str] | None = None) -> dict[str, Any]:
    """The input as two consistent spellings: snake_case (canonical) or camelCase (OpenSyte's columns).

    Definitions with no camelCase difference are shared; a row's bookkeeping columns are listed as ignored
    properties of the top-level object; `integration_type` carries the registered integration types.
    """
    snake = model.model_json_schema(by_alias=False, schema_generator=_NoFieldTitles)
    camel = model.model_json_schema(by_alias=True, schema_generator=_NoFieldTitles)
    name = snake.get("title", model.__name__)
    defs: dict[str, Any] = snake.pop("$defs", {})
    camel_defs: dict[str, Any] = camel.pop("$defs", {})
    defs[name], camel_defs[name] = snake, camel
    differs = {d for d in camel_defs if camel_defs[d] != defs.get(d)}
    while True:  # a definition that refers to a renamed one is renamed too
        more = {d for d in camel_defs if d not in differs and _refs(camel_defs[d]) & differs}
        if not more:
            break
        differs |= more
    for d in differs:
        twin = _rename_refs(camel_defs[d], differs)
        twin["title"] = f"{twin.get('title', d)}{CAMEL}"
        defs[f"{d}{CAMEL}"] = twin
    top = [name] + ([f"{name}{CAMEL}"] if name in differs else [])
    for t in top:
        props = defs[t].setdefault("properties", {})
        if issubclass(model, WorkflowInput):
            for meta, schema in _metadata_properties(camel_only=t.endswith(CAMEL)).items():
                props.setdefault(meta, schema)
        for key in ("integration_type", "integrationType"):
            if types and key in props:
                props[key] = {**props[key], "enum": types}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "description": (f"Input of the workflow, snake_case ({name}) or with OpenSyte's camelCase names "
                        f"({name}{CAMEL})."),
        "anyOf": [{"$ref": f"#/$defs/{t}"} for t in top],
        "$defs": dict(sorted(defs.items())),
    }


def result_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A result as it is written (core/payloads.py): snake_case, every field present except those that default
    to null and are null (left out, so they are optional here)."""

    class _Serialized(_NoFieldTitles):
        def field_is_required(self, field: Any, total: bool) -> bool:
            if self.mode != "serialization":
                return super().field_is_required(field, total)
            inner = field.get("schema") or {}
            return not (inner.get("type") == "default" and "default" in inner and inner["default"] is None)

    schema = copy.deepcopy(model.model_json_schema(by_alias=False, mode="serialization",
                                                   schema_generator=_Serialized))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# Started by the service itself (signal-with-start on an alert or an event, a schedule), never by OpenSyte: they
# follow the contract's conventions but are not part of the published contract (no schema, no client helper).
INTERNAL_WORKFLOWS = frozenset({"AdminAlertDelivery", "EventDelivery", "SweepEventOutbox"})


def public_workflow_models() -> dict[str, tuple[type[BaseModel], type[BaseModel] | None]]:
    """The workflows OpenSyte starts: `workflow_models()` without `INTERNAL_WORKFLOWS`."""
    return {n: m for n, m in workflow_models().items() if n not in INTERNAL_WORKFLOWS}


def export_schemas(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, (inp, res) in sorted(public_workflow_models().items()):
        schemas = {"input": input_schema(inp, integration_types(name))}
        if res is not None:
            schemas["result"] = result_schema(res)
        for suffix, schema in schemas.items():
            path = out / f"{name}.{suffix}.schema.json"
            path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written
