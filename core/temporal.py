"""The Temporal client factory: one client per process, pydantic converter, optional codec."""

from __future__ import annotations

import dataclasses
import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime as TemporalRuntime

from core.payloads import compact_data_converter
from core.runtime import make_vault
from core.settings import Settings
from core.visibility import SEARCH_ATTRIBUTES
from vault.codec import VaultEnvelopeCodec

log = logging.getLogger("osi.temporal")


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads without null padding, encrypted with the Vault envelope codec when enabled."""
    if not settings.payload_encryption:
        return compact_data_converter

    codec = VaultEnvelopeCodec(make_vault(settings), settings.vault_transit_key)
    return dataclasses.replace(compact_data_converter, payload_codec=codec)


async def connect(settings: Settings, *, runtime: TemporalRuntime | None = None) -> Client:
    """Connect once per process (worker, gateway, CLI); never per request. `runtime`: the SDK runtime whose
    telemetry (Prometheus) the worker configures."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )


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
