"""Every registered plugin has the parts it declares; names and error types are pinned."""

from __future__ import annotations

import inspect

import pytest

from core.errors import ERROR_TYPES, NON_RETRYABLE_TYPES
from core.plugin import Plugin, ProviderSpec
from core.policies import BATCH, BOOKKEEPING, LOOKUP, SEND
from core.runtime import Runtime
from core.settings import ProviderSettings, Settings
from worker.registry import REGISTRATIONS, registry, workflows

PROVIDERS = registry().providers()


def test_error_taxonomy_is_pinned() -> None:
    assert ERROR_TYPES == {"TemporaryError", "PermanentError", "ConfigurationError"}
    for opts in (SEND, LOOKUP, BOOKKEEPING, BATCH):
        assert set(opts.retry_policy.non_retryable_error_types or []) == set(NON_RETRYABLE_TYPES)
        assert "TemporaryError" not in (opts.retry_policy.non_retryable_error_types or [])


@pytest.mark.parametrize("plugin", PROVIDERS, ids=lambda p: p.name)
def test_provider_plugin_is_complete(plugin: Plugin) -> None:
    provider = plugin.provider
    assert provider is not None
    spec = provider.spec
    assert isinstance(spec, ProviderSpec) and spec.name == plugin.name and spec.integration_type.isupper()
    assert spec.auth_kind in {"bearer", "oauth2", "api_key"}
    assert issubclass(provider.settings, ProviderSettings) and provider.settings.section_name == spec.name
    assert provider.settings.sandbox_overrides("http://sandbox").get("base_url", "").startswith("http://sandbox")
    assert spec.rate_limits, f"{spec.name}: declares no rate limits"
    assert callable(provider.classify) and callable(provider.auth_headers)
    assert inspect.iscoroutinefunction(plugin.test_connection)
    if spec.auth_kind == "oauth2":
        assert provider.refresh is not None, f"{spec.name}: OAuth provider without a refresh function"
        assert spec.install_path is not None, f"{spec.name}: OAuth provider without an install route"
    # The classifier answers success with None and failure with a classified error.
    assert provider.classify(200, {}, {"ok": True}) is None or spec.name == "slack"
    err = provider.classify(503, {}, {})
    assert err is not None and err.error_class.value == "TemporaryError"


def test_the_spec_is_what_the_limiter_runs() -> None:
    """A provider's limits reach the limiter as declared: the window is the period plus the declared margin."""
    for plugin in PROVIDERS:
        assert plugin.provider is not None
        for name, lim in plugin.provider.spec.rate_limits.items():
            window = lim.window("k")
            assert (window.scope, window.limit, window.period) == (lim.scope, lim.limit, lim.period + lim.margin), name


def test_activity_names_are_unique_and_namespaced() -> None:
    rt = Runtime(Settings(_env_file=None), registry=registry())  # type: ignore[call-arg]
    names: list[str] = []
    for p in rt.registry:
        for fn in (p.activities(rt) if p.activities else []):
            defn = getattr(fn, "__temporal_activity_definition")
            assert defn.name.split(".", 1)[0] == p.name, defn.name
            names.append(defn.name)
    assert len(names) == len(set(names)), "duplicate activity names fail the worker"
    rt.store.dispose()


def test_every_registration_brings_its_parts() -> None:
    for reg in REGISTRATIONS:
        p = reg.plugin
        assert p.activities or p.routes or p.cli or reg.workflows, f"{p.name} contributes nothing"


def test_workflows_take_and_return_pydantic_models() -> None:
    from worker.schemas import workflow_models

    models = workflow_models()
    assert {getattr(w, "__temporal_workflow_definition").name for w in workflows()} == set(models)
