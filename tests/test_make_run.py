"""`make run`'s stack runner end to end: every demo succeeds, twice on the same data folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from worker.stack import free_port


def test_make_run_demo_succeeds_twice(tmp_path) -> None:
    ports = {name: free_port() for name in ("temporal", "ui", "vault", "gateway", "sandbox", "metrics")}
    env = {**os.environ,
           "OSI_DATA_DIR": str(tmp_path / "data"),
           "OSI_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
           "OSI_TEMPORAL_UI_PORT": str(ports["ui"]),
           "OSI_TEMPORAL_UI_URL": f"http://127.0.0.1:{ports['ui']}",
           "OSI_VAULT_ADDR": f"http://127.0.0.1:{ports['vault']}",
           "OSI_GATEWAY_PORT": str(ports["gateway"]),
           "OSI_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
           "OSI_SANDBOX_PORT": str(ports["sandbox"]),
           "OSI_WORKER_METRICS_PORT": str(ports["metrics"]),
           "OSI_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'osi.db'}",
           "OSI_DEMO_EXIT": "1", "COLUMNS": "200"}
    for name in list(env):
        if name.startswith("OSI_") and name.endswith("_BASE_URL"):
            del env[name]  # the runner must point providers at its own sandbox
    for run in (1, 2):
        proc = subprocess.run([sys.executable, "-m", "worker.dev"], env=env, capture_output=True, text=True,
                              timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        summary = json.loads(re.search(r"Demo summary: (\{.*\})", out).group(1))  # type: ignore[union-attr]
        assert summary and all(v == "ok" for v in summary.values()), (run, summary, out[-3000:])
        assert "whatsapp" in summary
        assert f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows/" in out
    assert (tmp_path / "data" / "temporal.db").exists()
