"""JSON Schema export of every workflow's input and result (for TypeScript starters)."""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

from pydantic import BaseModel

from worker.registry import workflows


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


def export_schemas(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, (inp, res) in sorted(workflow_models().items()):
        for suffix, model in (("input", inp), ("result", res)):
            if model is None:
                continue
            path = out / f"{name}.{suffix}.schema.json"
            path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written
