"""Payload codec: envelope encryption of workflow payloads with a Vault transit data key, scoped to an organization."""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from hvac.exceptions import InvalidRequest
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

from vault.client import VaultClient

ENCODING = b"binary/encrypted"
KEY_META = "encryption-key-id"
# Inside the encrypted envelope (never in clear text): the organization a payload belongs to. Without it only the
# operator scope may decode the payload.
ORG_META = "osi-organization"
OPERATOR = None  # the scope that may decode every organization's payloads
_UNWRAPPED_CACHE = 256  # wrapped data keys kept unwrapped (one per process that encoded; bounded anyway)
_WORKFLOWS_REMEMBERED = 100_000  # workflow id -> organization entries (LRU)


class CodecError(ValueError):
    """A payload that is not ours to decode: garbage ciphertext, a foreign key, a broken envelope."""


def organization_of(p: Payload) -> str | None:
    """The `organization_id` / `organizationId` of a JSON payload whose top level is an object, else None."""
    if p.metadata.get("encoding") != b"json/plain" or b"rganization" not in p.data:
        return None
    try:
        doc = json.loads(p.data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    value = doc.get("organization_id") or doc.get("organizationId")
    return value if isinstance(value, str) and value else None


class _Shared:
    """What every context-bound copy of one codec shares: the data key, unwrapped keys, learned organizations."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self.wrapped: str | None = None
        self.unwrapped: OrderedDict[str, bytes] = OrderedDict()
        self.lock = asyncio.Lock()
        # workflow id -> organization, learned from the workflow's own payloads (its input names the organization).
        self.organizations: OrderedDict[str, str] = OrderedDict()

    def learn(self, workflow_id: str | None, organization: str | None) -> None:
        if workflow_id and organization:
            self.organizations[workflow_id] = organization
            self.organizations.move_to_end(workflow_id)
            while len(self.organizations) > _WORKFLOWS_REMEMBERED:
                self.organizations.popitem(last=False)


class VaultEnvelopeCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM per payload; the data key is wrapped by Vault transit and travels in metadata.

    One transit call per process (generate) and one per foreign key (unwrap, cached), not one per
    payload. Payloads without our encoding (e.g. started by OpenSyte's TypeScript client) pass
    through untouched, so plain-JSON starts keep working. Each encrypted payload carries, inside the
    ciphertext, the organization it belongs to, so the codec endpoint can decode for an organization's key
    only that organization's payloads: the organization of its JSON, else that of the workflow it belongs to
    (Temporal gives the codec the workflow id; its input, decoded first, named the organization). A result or
    a failure without an `organization_id` of its own is thus its workflow's organization's to read.
    """

    def __init__(self, vault: VaultClient, key_name: str, *, _shared: _Shared | None = None,
                 _workflow_id: str | None = None) -> None:
        self.vault = vault
        self.key_name = key_name
        self._shared = _shared or _Shared()
        self._workflow_id = _workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        """A copy bound to the workflow (or the activity's workflow) whose payloads it is about to handle."""
        workflow_id = getattr(context, "workflow_id", None)
        return type(self)(self.vault, self.key_name, _shared=self._shared, _workflow_id=workflow_id)

    async def _current(self) -> tuple[bytes, str]:
        shared = self._shared
        if shared.key is None or shared.wrapped is None:
            async with shared.lock:
                if shared.key is None:
                    shared.key, shared.wrapped = await asyncio.to_thread(self.vault.generate_data_key,
                                                                         self.key_name)
        assert shared.key is not None and shared.wrapped is not None
        return shared.key, shared.wrapped

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.encode_scoped(payloads)

    async def encode_scoped(self, payloads: Sequence[Payload], default_organization: str | None = None
                            ) -> list[Payload]:
        """Encrypt; a payload's organization is its JSON's, else `default_organization`, else its workflow's
        (else operator-only)."""
        key, wrapped = await self._current()
        aes = AESGCM(key)
        out = []
        for p in payloads:
            own = organization_of(p)
            self._shared.learn(self._workflow_id, own)
            org = own or default_organization or self._shared.organizations.get(self._workflow_id or "")
            inner = Payload()
            inner.CopyFrom(p)
            if org is not None:
                inner.metadata[ORG_META] = org.encode()
            nonce = os.urandom(12)
            out.append(Payload(metadata={"encoding": ENCODING, KEY_META: wrapped.encode()},
                               data=nonce + aes.encrypt(nonce, inner.SerializeToString(), None)))
        return out

    async def _data_key(self, wrapped: str) -> bytes:
        shared = self._shared
        if wrapped == shared.wrapped and shared.key is not None:
            return shared.key
        key = shared.unwrapped.get(wrapped)
        if key is None:
            if not wrapped.startswith("vault:v"):
                raise CodecError("the payload's key id is not a Vault transit ciphertext")
            try:
                key = await asyncio.to_thread(self.vault.unwrap_data_key, self.key_name, wrapped)
            except InvalidRequest:
                raise CodecError("Vault cannot unwrap the payload's data key") from None
            shared.unwrapped[wrapped] = key
            while len(shared.unwrapped) > _UNWRAPPED_CACHE:
                shared.unwrapped.popitem(last=False)
        return key

    async def open(self, p: Payload) -> tuple[Payload, str | None]:
        """(plain payload, its organization) of one payload of ours; CodecError for anything else."""
        wrapped = p.metadata.get(KEY_META)
        if not wrapped or len(p.data) < 12 + 16:
            raise CodecError("encrypted payload without its key id or too short")
        try:
            key = await self._data_key(wrapped.decode())
            plain = AESGCM(key).decrypt(p.data[:12], p.data[12:], None)
            inner = Payload.FromString(plain)
        except (InvalidTag, UnicodeDecodeError, DecodeError):
            raise CodecError("the payload does not decrypt (garbage or tampered ciphertext)") from None
        org = inner.metadata[ORG_META].decode() if ORG_META in inner.metadata else None
        if ORG_META in inner.metadata:
            del inner.metadata[ORG_META]
        return inner, org

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Everything (the worker and the CLI decode with the service's own rights)."""
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                self._shared.learn(self._workflow_id, organization_of(p))  # a plain-JSON start
                out.append(p)
                continue
            inner, org = await self.open(p)
            self._shared.learn(self._workflow_id, org)
            out.append(inner)
        return out

    async def decode_scoped(self, payloads: Sequence[Payload], organization_id: str | None) -> list[Payload]:
        """What a caller limited to `organization_id` (None: the operator) may read: its organization's payloads
        decrypted, every other encrypted payload returned as it came (still encrypted)."""
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)
                continue
            inner, org = await self.open(p)
            out.append(inner if organization_id is OPERATOR or org == organization_id else p)
        return out
