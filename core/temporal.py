"""The Temporal client factory: Temporal's own client configuration (envconfig) with our overrides, one client."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig

from core.contract import EncodedContractFailureConverter, contract_data_converter
from core.runtime import make_vault
from core.settings import Settings
from vault.codec import VaultEnvelopeCodec

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


class TemporalConfigError(ValueError):
    """The Temporal client configuration (environment, temporal.toml) cannot be used as given."""


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads and our failure shape (core.contract), encrypted by the Vault envelope codec when
    enabled; failure messages and stack traces then travel encrypted too (history shows "Encoded failure")."""
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


async def connect(settings: Settings, environ: Mapping[str, str] | None = None) -> Client:
    """Connect once per process (worker, gateway, CLI); never per request."""
    return await Client.connect(**client_config(settings, environ), data_converter=data_converter(settings))
