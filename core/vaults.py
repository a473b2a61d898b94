"""The Vault client for a process's settings (one construction rule for the runtime, links and the CLI)."""

from __future__ import annotations

from core.settings import Settings
from vault.client import VaultClient


def make_vault(settings: Settings) -> VaultClient:
    return VaultClient(
        settings.vault_addr,
        token=settings.vault_token.get_secret_value() if settings.vault_token else None,
        role_id=settings.vault_role_id,
        secret_id=settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None,
        token_file=settings.vault_token_file,
        secret_id_file=settings.vault_secret_id_file,
        kv_mount=settings.vault_kv_mount,
        kv_prefix=settings.vault_kv_prefix,
        transit_mount=settings.vault_transit_mount,
        cache_ttl=settings.vault_cache_ttl_seconds,
        stale_ttl=settings.vault_stale_ttl_seconds,
        timeout=settings.vault_timeout_seconds,
    )
