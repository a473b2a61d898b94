"""The key that keeps customers' phone numbers out of conversation workflow ids (one per deployment, in Vault).

Workflow ids are stored and shown unencrypted (Web UI, CLI, visibility), so `conversation_workflow_id` hashes
the customer with this key. Every gateway must derive the same id for signal-with-start to find a running
conversation: the key is made once (check-and-set create, the first writer wins) and then only read.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pydantic import SecretStr

from activities.whatsapp.models import conversation_workflow_id
from core.errors import ConfigurationError
from vault.client import CASConflict, CredentialsMissing, VaultError
from vault.credentials import ApiKeyCredentials

if TYPE_CHECKING:
    from core.runtime import Runtime

VAULT_NAME = "whatsapp-conversation-ids"  # osi/apps/whatsapp-conversation-ids
CACHE_KEY = "whatsapp.conversation_id_key"


async def key(rt: Runtime, *, create: bool = True) -> bytes:
    """The deployment's key (cached per process); made on first use where Vault allows it (dev, operator)."""
    cached = rt.extras.get(CACHE_KEY)
    if isinstance(cached, bytes):
        return cached
    path = rt.vault.app_path(VAULT_NAME)
    try:
        creds = await rt.vault.read(path, use_cache=False)
    except CredentialsMissing:
        if not create:
            raise
        try:
            await rt.vault.write(path, ApiKeyCredentials(api_key=SecretStr(secrets.token_urlsafe(32))), cas=0)
        except (CASConflict, VaultError):
            pass  # another process made it first (or this one may not create it): read what is there
        try:
            creds = await rt.vault.read(path, use_cache=False)
        except CredentialsMissing:
            raise ConfigurationError(
                "the WhatsApp conversation-id key is missing and this process may not create it: run "
                "`osi whatsapp conversation-key` once with an operator token", code="conversation_key_missing",
                provider="whatsapp") from None
    if not isinstance(creds, ApiKeyCredentials):
        raise ConfigurationError(f"{path} does not hold a key", code="conversation_key_missing", provider="whatsapp")
    value = creds.api_key.get_secret_value().encode()
    rt.extras[CACHE_KEY] = value
    return value


async def workflow_id(rt: Runtime, organization_id: str, phone_number_id: str, customer: str) -> str:
    """The conversation's workflow id for a customer (wa_id or BSUID)."""
    return conversation_workflow_id(await key(rt), organization_id, phone_number_id, customer)
