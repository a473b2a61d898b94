"""The workflow sandbox re-runs a workflow's module, and every workflow module that module imports, for each
workflow run; a single send must not pay for the bulk and conversation workflows' modules (bench/per_event.py
measured them at more than half of that re-import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules if m.startswith("workflows."))))
"""


def loaded_with(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return list(json.loads(out))


def test_send_whatsapp_message_module_imports_no_other_workflow_module() -> None:
    assert loaded_with("workflows.whatsapp") == ["workflows.whatsapp"]


def test_the_worker_still_registers_every_whatsapp_workflow() -> None:
    from worker.registry import WHATSAPP_WORKFLOWS, workflows

    names = {w.__name__ for w in WHATSAPP_WORKFLOWS}
    assert names == {"SendWhatsAppMessage", "WhatsAppConversation", "BulkSendWhatsAppTemplate"}
    assert set(WHATSAPP_WORKFLOWS) <= set(workflows())
