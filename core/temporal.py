"""The Temporal client factory: Temporal's own client configuration (envconfig) with our overrides, one client."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.runtime import Runtime as TemporalRuntime

from core.contract import EncodedContractFailureConverter, contract_data_converter
from core.settings import Settings
from core.vaults import make_vault
from core.visibility import SEARCH_ATTRIBUTES
from vault.codec import VaultEnvelopeCodec

log = logging.getLogger("osi.temporal")

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


class TemporalConfigError(ValueError):
    """The Temporal client configuration (environment, temporal.toml) cannot be used as given."""


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads without null padding and our failure shape (core.contract), encrypted by the Vault
    envelope codec when enabled; failure messages and stack traces then travel encrypted too."""
    if not settings.payload_encryption:
        return contract_data_converter

    codec = VaultEnvelopeCodec(make_vault(settings), settings.vault_transit_key)
    return dataclasses.replace(contract_data_converter, payload_codec=codec,
                               failure_converter_class=EncodedContractFailureConverter)


def client_config(settings: Settings, environ: Mapping[str, str] | None = None) -> ClientConnectConfig:
    """What `Client.connect` gets, resolved like the `temporal` CLI resolves it, lowest precedence first:

    1. built-in defaults: `127.0.0.1:7233`, namespace `default`, no TLS;
    2. the profile `TEMPORAL_PROFILE` (default "default") of the TOML file `TEMPORAL_CONFIG_FILE` (default
       `~/.config/temporalio/temporal.toml`): address, namespace, api_key, tls (server CA, client cert/key,
       server name), grpc_meta;
    3. `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_GRPC_META_*`;
    4. `OSI_TEMPORAL_ADDRESS` / `OSI_TEMPORAL_NAMESPACE` (settings), when set.

    An API key turns TLS on (system roots) unless TLS is configured otherwise. `environ` replaces the
    process environment (tests)."""
    env = dict(os.environ if environ is None else environ)
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    # envconfig ignores a config file that does not exist; a named one that is missing is a mistake
    # (a secret not mounted), and connecting to localhost instead would hide it.
    if config_file and not Path(config_file).is_file():
        raise TemporalConfigError(f"TEMPORAL_CONFIG_FILE={config_file} does not exist")
    try:
        profile = ClientConfigProfile.load(override_env_vars=env)
        config = profile.to_client_connect_config()
    except (OSError, RuntimeError, ValueError) as exc:  # the bridge's ConfigError is a RuntimeError
        raise TemporalConfigError(f"Temporal client configuration: {exc}") from exc
    config["target_host"] = settings.temporal_address or config.get("target_host") or DEFAULT_ADDRESS
    config["namespace"] = settings.temporal_namespace or config.get("namespace") or DEFAULT_NAMESPACE
    return config


def describe(config: ClientConnectConfig) -> str:
    """Where a client goes and how it authenticates, for logs (never the key itself)."""
    tls = config.get("tls")
    how = ["tls" if tls else "plaintext"]
    if tls is not False and tls is not True and tls is not None and tls.client_cert:
        how.append("client certificate")
    if config.get("api_key"):
        how.append("api key")
    return f"{config.get('target_host')} namespace {config.get('namespace')} ({', '.join(how)})"


async def connect(settings: Settings, environ: Mapping[str, str] | None = None, *,
                  runtime: TemporalRuntime | None = None) -> Client:
    """Connect once per process (worker, gateway, CLI); never per request. `runtime`: the SDK runtime whose
    telemetry (Prometheus) the worker configures."""
    return await Client.connect(**client_config(settings, environ), data_converter=data_converter(settings),
                                runtime=runtime)


async def ensure_search_attributes(client: Client) -> bool:
    """Register our custom search attributes (Keyword) on the client's namespace where missing.

    False when they are missing and cannot be added here (Temporal Cloud: `tcld namespace search-attributes
    add`; a self-hosted cluster without operator rights: `temporal operator search-attribute create`); the
    worker then leaves search attributes alone instead of failing every workflow task.
    """
    try:
        have = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
        missing = {n: t for n, t in SEARCH_ATTRIBUTES.items() if n not in have.custom_attributes}
        if missing:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in missing}))
            log.info("registered search attributes %s on namespace %s", sorted(missing), client.namespace)
    except Exception as exc:
        log.error("search attributes %s are not registered on namespace %s and could not be added (%s); "
                  "workflows run without them. Register them: %s", sorted(SEARCH_ATTRIBUTES), client.namespace,
                  exc, register_command(client.namespace))
        return False
    return True


def register_command(namespace: str) -> str:
    """The `temporal` CLI command that registers our search attributes (production setup)."""
    names = " ".join(f"--name {n}" for n in SEARCH_ATTRIBUTES)  # all Keyword
    return f"temporal operator search-attribute create --namespace {namespace} {names} --type Keyword"
