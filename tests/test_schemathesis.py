"""Property-based fuzzing of the gateway's OpenAPI (schemathesis strategies, stateless, fixed seed, bounded):
whatever the input, with or without a key, no response is a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from activities.slack.seed import ensure_app
from tests.calendar_seed import google_app, microsoft_app
from tests.prod_gateway import prod_gateway as prod_gateway

EXAMPLES = 30  # per operation and key mode: 31 operations x 2 modes, well under a minute here


def fuzz(url: str, headers: dict[str, str]) -> list[str]:
    """Every operation of the schema, EXAMPLES generated cases each (derandomized: the same cases every run)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.base_url = url
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 20
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(headers=headers, timeout=20)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")

        run()
    return failures


@pytest.fixture(scope="module")
async def configured(runtime, sandbox, gateway) -> None:
    """The provider apps exist (as in any deployment): an unconfigured app is an honest 503, not hostile input."""
    await ensure_app(runtime, sandbox.url, gateway)
    await google_app(runtime, sandbox.url, gateway)
    await microsoft_app(runtime, sandbox.url, gateway)


def test_no_key_never_5xx(prod_gateway, configured) -> None:
    assert fuzz(prod_gateway.url, {}) == []


def test_operator_key_never_5xx(prod_gateway, configured) -> None:
    assert fuzz(prod_gateway.url, {"Authorization": f"Bearer {prod_gateway.operator_key}"}) == []
