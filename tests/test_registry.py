"""Every registered plugin has every part; names and error types are pinned."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest
from pydantic import BaseModel

from activities.errors import ERROR_TYPES, NON_RETRYABLE_TYPES
from activities.policies import BATCH, BOOKKEEPING, LOOKUP, SEND
from activities.registry import all_workflows, plugins
from activities.spec import Plugin, ProviderSpec
from store.models import IntegrationType
from worker.settings import Settings


def test_error_taxonomy_is_pinned() -> None:
    assert ERROR_TYPES == {"TemporaryError", "PermanentError", "ConfigurationError"}
    for opts in (SEND, LOOKUP, BOOKKEEPING, BATCH):
        assert set(opts.retry_policy.non_retryable_error_types or []) == set(NON_RETRYABLE_TYPES)
        assert "TemporaryError" not in (opts.retry_policy.non_retryable_error_types or [])


@pytest.mark.parametrize("plugin", plugins(), ids=lambda p: p.spec.name)
def test_plugin_is_complete(plugin: Plugin) -> None:
    spec = plugin.spec
    assert isinstance(spec, ProviderSpec) and spec.name and isinstance(spec.integration_type, IntegrationType)
    assert spec.auth_kind in {"bearer", "oauth2", "api_key", "service_account", "client_credentials"}
    assert hasattr(Settings(), spec.base_url_setting), f"{spec.name}: unknown base URL setting"
    if spec.token_url_setting:
        assert hasattr(Settings(), spec.token_url_setting)
    assert spec.rate_limits, f"{spec.name}: declares no rate limits"
    assert isinstance(plugin.models, ModuleType)
    assert any(inspect.isclass(v) and issubclass(v, BaseModel) for v in vars(plugin.models).values())
    assert inspect.isclass(plugin.client)
    assert callable(plugin.classify) and callable(plugin.auth_headers)
    assert inspect.iscoroutinefunction(plugin.test_connection)
    assert plugin.workflows, f"{spec.name}: no workflows"
    if spec.has_webhooks:
        assert plugin.webhook_verifier is not None and plugin.webhook_parser is not None
    if spec.auth_kind == "oauth2":
        assert plugin.refresh is not None, f"{spec.name}: OAuth plugin without a refresh function"
    # The classifier answers success with None and failure with a classified error.
    assert plugin.classify(200, {}, {"ok": True}) is None or spec.name == "slack"
    err = plugin.classify(503, {}, {})
    assert err is not None and err.error_class.value == "TemporaryError"


def test_activity_names_are_unique_and_namespaced() -> None:
    names: list[str] = []

    class _Rt:  # activities are only bound here, never called
        def __getattr__(self, _: str) -> None:
            return None

    for p in plugins():
        for fn in p.activities(_Rt()):  # type: ignore[arg-type]
            defn = getattr(fn, "__temporal_activity_definition")
            assert defn.name.split(".", 1)[0] in {p.spec.name, "calendar", "admin"}, defn.name
            names.append(defn.name)
    assert len(names) == len(set(names)), "duplicate activity names fail the worker"


def test_workflows_take_and_return_pydantic_models() -> None:
    from worker.schemas import workflow_models

    models = workflow_models()
    assert {getattr(w, "__temporal_workflow_definition").name for w in all_workflows()} == set(models)
