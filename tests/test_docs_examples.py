"""Every JSON example in README.md and docs/*.md is valid against docs/schemas and, when it is a workflow input,
runs through its workflow on the test stack as plain JSON (what OpenSyte's TypeScript client sends).

Examples are ```json blocks preceded by `<!-- schema: Workflow.input -->` (or `.result`, or `none` for JSON that
is not a workflow's), and `temporal workflow start --type Workflow … --input '…'` commands. Every organization
an example names is seeded with a connection of each kind (`tests/contract_seed.py`): Slack #general is
C0123456789 with user U0123456789, `org_acme`'s calendars belong to ann@acme.example (Google) and
bob@acme.example (Outlook); an Update/CancelCalendarEvent example acts on the event the previous
CreateCalendarEvent example created (its `event_id` is replaced).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.runtime import Runtime
from tests.contract_seed import contract_org

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"<!--\s*schema:\s*([\w.]+)\s*-->")
START = re.compile(r"temporal workflow start\b.*?--type\s+(\w+).*?--input\s+'(.*?)'", re.S)
CALENDAR_USERS = {"org_acme": ("ann@acme.example", "bob@acme.example")}
SLACK_IDS = ("C0123456789", "U0123456789")


@dataclass
class Example:
    where: str
    schema: str  # "Workflow.input" / "Workflow.result"
    data: Any

    @property
    def workflow(self) -> str:
        return self.schema.split(".")[0]


def examples() -> list[Example]:
    found: list[Example] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i, marker = 0, None
        while i < len(lines):
            m = MARKER.search(lines[i])
            if m:
                marker = m.group(1)
            fence = FENCE.match(lines[i])
            if not fence:
                if lines[i].strip() and not m:
                    marker = None
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            body = "\n".join(lines[i + 1:end])
            where = f"{doc.name}:{i + 1}"
            if fence.group(1) == "json":
                assert marker, f"{where}: mark the JSON example with <!-- schema: Workflow.input|result|none -->"
                if marker != "none":
                    found.append(Example(where, marker, json.loads(body)))
            for start in START.finditer(body):
                found.append(Example(where, f"{start.group(1)}.input", json.loads(start.group(2))))
            marker, i = None, end + 1
    return found


EXAMPLES = examples()


def schema(name: str) -> dict[str, Any]:
    path = SCHEMAS / f"{name}.schema.json"
    assert path.exists(), f"no schema {path.name}"
    return json.loads(path.read_text())


def test_the_docs_have_examples_of_each_kind() -> None:
    kinds = {e.schema for e in EXAMPLES}
    assert {"SendWhatsAppMessage.input", "SendSlackMessage.input", "CreateCalendarEvent.input",
            "UpdateCalendarEvent.input", "CancelCalendarEvent.input", "CreateCalendarEvent.result"} <= kinds


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.where}-{e.schema}")
def test_example_matches_its_schema(example: Example) -> None:
    errors = sorted(Draft202012Validator(schema(example.schema)).iter_errors(example.data), key=str)
    assert not errors, f"{example.where}: {[e.message for e in errors[:5]]}"


async def test_input_examples_run_through_their_workflows(client, worker, runtime: Runtime, sandbox, gateway,
                                                          task_queue) -> None:
    inputs = [e for e in EXAMPLES if e.schema.endswith(".input")]
    orgs = {e.data.get("organization_id") or e.data.get("organizationId") for e in inputs}
    for org in sorted(o for o in orgs if o):
        google, outlook = CALENDAR_USERS.get(org, (None, None))
        await contract_org(runtime, sandbox.url, gateway, org=org, google_email=google, outlook_email=outlook,
                           slack_ids=SLACK_IDS)
    created: dict[tuple[str, str], str] = {}
    for example in inputs:
        data = dict(example.data)
        org = data.get("organization_id") or data.get("organizationId")
        kind = data.get("integration_type") or data.get("integrationType") or ""
        if example.workflow in ("UpdateCalendarEvent", "CancelCalendarEvent"):
            key = "eventId" if "eventId" in data else "event_id"
            data[key] = created[(org, kind)]
        result = await client.execute_workflow(example.workflow, data, id=f"docs-{uuid.uuid4().hex[:12]}",
                                               task_queue=task_queue)
        errors = list(Draft202012Validator(schema(f"{example.workflow}.result")).iter_errors(result))
        assert not errors, f"{example.where}: result {[e.message for e in errors[:5]]}"
        if example.workflow == "CreateCalendarEvent":
            created[(org, kind)] = result["event"]["id"]
        if example.workflow == "SendWhatsAppMessage":
            assert result["failed"] == 0, f"{example.where}: {result}"
        if example.workflow == "SendSlackMessage":
            assert result["delivered"], f"{example.where}: {result}"
