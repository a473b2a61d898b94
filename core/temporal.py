"""The Temporal client factory: one client per process, pydantic converter, optional codec."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.converter import DataConverter

from core.contract import EncodedContractFailureConverter, contract_data_converter
from core.runtime import make_vault
from core.settings import Settings
from vault.codec import VaultEnvelopeCodec


def data_converter(settings: Settings) -> DataConverter:
    """pydantic JSON payloads and our failure shape (core.contract), encrypted by the Vault envelope codec when
    enabled; failure messages and stack traces then travel encrypted too (history shows "Encoded failure")."""
    if not settings.payload_encryption:
        return contract_data_converter

    codec = VaultEnvelopeCodec(make_vault(settings), settings.vault_transit_key)
    return dataclasses.replace(contract_data_converter, payload_codec=codec,
                               failure_converter_class=EncodedContractFailureConverter)


async def connect(settings: Settings) -> Client:
    """Connect once per process (worker, gateway, CLI); never per request."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
