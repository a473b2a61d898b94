"""`make run`'s stack runner end to end: every demo succeeds, twice on the same data folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from worker.stack import free_port

# What the runner prints when a port it was given is taken (checked before starting, or the child's bind error).
PORT_TAKEN = ("cannot start the local stack", "address already in use")


def runner_env(tmp_path) -> tuple[dict[str, str], dict[str, int]]:
    """Every port `make run` binds (port_plan in worker/dev.py), each picked free."""
    ports = {name: free_port() for name in ("temporal", "ui", "vault", "gateway", "sandbox", "metrics", "sdk")}
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
           "OSI_WORKER_SDK_METRICS_PORT": str(ports["sdk"]),
           "OSI_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'osi.db'}",
           "OSI_DEMO_EXIT": "1", "COLUMNS": "200"}
    for name in list(env):
        if name.startswith("OSI_") and name.endswith("_BASE_URL"):
            del env[name]  # the runner must point providers at its own sandbox
    return env, ports


def test_make_run_demo_succeeds_twice(tmp_path) -> None:
    for run in (1, 2):
        # `make run` takes fixed ports: one another process took after they were picked is tried again on new ones
        # (the runner stops naming the port; OpenBao's cluster port is the vault port + 1, never checked free here).
        for _ in range(3):
            env, ports = runner_env(tmp_path)
            proc = subprocess.run([sys.executable, "-m", "worker.dev"], env=env, capture_output=True, text=True,
                                  timeout=300)
            out = proc.stdout + proc.stderr
            if proc.returncode == 0 or not any(marker in out for marker in PORT_TAKEN):
                break
        assert proc.returncode == 0, out[-3000:]
        summary = json.loads(re.search(r"Demo summary: (\{.*\})", out).group(1))  # type: ignore[union-attr]
        assert summary and all(v == "ok" for v in summary.values()), (run, summary, out[-3000:])
        assert "whatsapp" in summary
        assert f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows/" in out
    assert (tmp_path / "data" / "temporal.db").exists()
