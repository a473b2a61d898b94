"""Payload codec: envelope encryption of workflow payloads with a Vault transit data key."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from vault.client import VaultClient

ENCODING = b"binary/encrypted"
KEY_META = "encryption-key-id"


class VaultEnvelopeCodec(PayloadCodec):
    """AES-256-GCM per payload; the data key is wrapped by Vault transit and travels in metadata.

    One transit call per process (generate) and one per foreign key (unwrap, cached), not one per
    payload. Payloads without our encoding (e.g. started by OpenSyte's TypeScript client) pass
    through untouched, so plain-JSON starts keep working.
    """

    def __init__(self, vault: VaultClient, key_name: str) -> None:
        self.vault = vault
        self.key_name = key_name
        self._key: bytes | None = None
        self._wrapped: str | None = None
        self._unwrapped: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    async def _current(self) -> tuple[bytes, str]:
        if self._key is None or self._wrapped is None:
            async with self._lock:
                if self._key is None:
                    key, wrapped = await asyncio.to_thread(self.vault.generate_data_key, self.key_name)
                    self._key, self._wrapped = key, wrapped
                    self._unwrapped[wrapped] = key
        assert self._key is not None and self._wrapped is not None
        return self._key, self._wrapped

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key, wrapped = await self._current()
        aes = AESGCM(key)
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_META: wrapped.encode()},
                    data=nonce + aes.encrypt(nonce, p.SerializeToString(), None),
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)
                continue
            wrapped = p.metadata[KEY_META].decode()
            key = self._unwrapped.get(wrapped)
            if key is None:
                key = await asyncio.to_thread(self.vault.unwrap_data_key, self.key_name, wrapped)
                self._unwrapped[wrapped] = key
            plain = AESGCM(key).decrypt(p.data[:12], p.data[12:], None)
            out.append(Payload.FromString(plain))
        return out
