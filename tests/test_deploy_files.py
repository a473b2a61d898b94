"""The production compose file is well-formed, complete and free of secrets; the Makefile keeps its promises."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_has_the_production_stack() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "redis", "vault", "temporal", "temporal-ui", "worker", "gateway"} <= set(services)
    env = services["worker"]["environment"]
    assert env["OSI_LIMITER_BACKEND"].startswith("redis://") and env["OSI_DATABASE_URL"].startswith("postgresql://")
    assert env["OSI_SANDBOX_ENABLED"] == "false"
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec")
    text = (ROOT / "docker-compose.yml").read_text()
    # Secrets are required from the environment (`${VAR:?}`), never written inline.
    for key in ("POSTGRES_PASSWORD", "OSI_VAULT_SECRET_ID", "OSI_ADMIN_API_KEY"):
        assert re.search(rf"\$\{{{key}:\?", text), key


def test_readme_opens_with_run_and_test_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "make run" in head and "make test" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
