"""The Dockerfile's bytecode step: installed workflow modules import without being compiled again."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, importlib.machinery, pkgutil, sys
compiled = []
original = importlib.machinery.SourceFileLoader.source_to_code
def spy(self, data, path, *a, **k):
    compiled.append(path)
    return original(self, data, path, *a, **k)
importlib.machinery.SourceFileLoader.source_to_code = spy
import workflows
for m in pkgutil.walk_packages(workflows.__path__, "workflows."):
    importlib.import_module(m.name)
print(workflows.__file__, len(sys.modules), [p for p in compiled if "/workflows/" in p])
"""


def test_precompiled_workflow_modules_are_used_after_a_copy_changed_their_timestamps(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    # Our package as the builder installs it (not editable), into a folder of its own.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(ROOT)], check=True, capture_output=True, timeout=300)
    # The Dockerfile's own compile command, pointed at that folder.
    cmd = re.search(r"^RUN /opt/venv/bin/python (-m compileall .*) /opt/venv/lib$",
                    (ROOT / "Dockerfile").read_text(), re.M)
    assert cmd, "the Dockerfile's compileall step"
    subprocess.run([sys.executable, *shlex.split(cmd.group(1)), str(site)], check=True, timeout=300)
    # COPY --from between stages need not keep mtimes; make every source newer than its .pyc, then make
    # the tree read-only like the runtime image's site-packages for its non-root user.
    for path in (site / "workflows").rglob("*.py"):
        os.utime(path, (path.stat().st_atime + 3600, path.stat().st_mtime + 3600))
    for path in site.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": ""}
        env.pop("PYTHONDONTWRITEBYTECODE")
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        where, n_modules, recompiled = out.strip().split(" ", 2)
        assert where.startswith(str(site))  # the installed copy, not the source tree
        assert int(n_modules) > 50
        assert recompiled == "[]", f"recompiled at import: {recompiled}"
    finally:
        for path in site.rglob("*"):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
