"""The Temporal client factory: one client per process, pydantic converter, optional codec."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from core.runtime import make_vault
from core.settings import Settings
from vault.codec import VaultEnvelopeCodec


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads, encrypted with the Vault envelope codec when enabled; failure messages and stack
    traces then travel encrypted too (`encode_common_attributes`: history shows "Encoded failure")."""
    if not settings.payload_encryption:
        return pydantic_data_converter

    codec = VaultEnvelopeCodec(make_vault(settings), settings.vault_transit_key)
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


async def connect(settings: Settings) -> Client:
    """Connect once per process (worker, gateway, CLI); never per request."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
