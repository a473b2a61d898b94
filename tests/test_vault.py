"""Vault (real OpenBao): typed credentials, cache, write-back, deletion, AppRole, coordinated refresh."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import hvac
import pytest
from pydantic import SecretStr

from vault.client import CredentialsMissing, VaultClient
from vault.credentials import ApiKeyCredentials, BearerTokenCredentials, OAuth2Credentials
from vault.oauth import TokenRefresher


@pytest.fixture
def vault(stack) -> VaultClient:
    return VaultClient(stack.vault_addr, token="root", cache_ttl=60)


def path(v: VaultClient) -> str:
    return v.connection_path(f"org_{uuid.uuid4().hex[:8]}", "SLACK", "default")


async def test_typed_roundtrip_and_secrets_never_print(vault: VaultClient) -> None:
    p = path(vault)
    creds = OAuth2Credentials(access_token=SecretStr("xoxe.xoxb-secret-value"), refresh_token=SecretStr("xoxe-1-r"),
                              expires_at=datetime.now(UTC) + timedelta(hours=12), scopes=["chat:write"])
    await vault.write(p, creds)
    got = await vault.read(p, use_cache=False)
    assert isinstance(got, OAuth2Credentials)
    assert got.access_token.get_secret_value() == "xoxe.xoxb-secret-value" and got.scopes == ["chat:write"]
    assert "secret-value" not in repr(got) and "secret-value" not in str(got.model_dump())
    api = ApiKeyCredentials(api_key=SecretStr("k"))
    await vault.write(p, api)
    assert isinstance(await vault.read(p), ApiKeyCredentials)


async def test_cache_serves_hot_path_and_write_back_updates_it(vault: VaultClient, stack) -> None:
    p = path(vault)
    await vault.write(p, BearerTokenCredentials(token=SecretStr("one")))
    await vault.read(p)
    # Another process changes the secret: our cached copy is served until the TTL or invalidation.
    other = VaultClient(stack.vault_addr, token="root")
    other.write_sync(p, BearerTokenCredentials(token=SecretStr("two")))
    cached = await vault.read(p)
    assert isinstance(cached, BearerTokenCredentials) and cached.token.get_secret_value() == "one"
    vault.invalidate(p)
    fresh = await vault.read(p)
    assert isinstance(fresh, BearerTokenCredentials) and fresh.token.get_secret_value() == "two"


async def test_delete_removes_all_versions(vault: VaultClient) -> None:
    p = path(vault)
    await vault.write(p, BearerTokenCredentials(token=SecretStr("x")))
    await vault.delete(p)
    with pytest.raises(CredentialsMissing):
        await vault.read(p, use_cache=False)


def test_path_segments_are_validated(vault: VaultClient) -> None:
    with pytest.raises(ValueError, match="connection name"):
        vault.connection_path("org", "SLACK", "../../sys")


def test_approle_login(stack) -> None:
    root = hvac.Client(url=stack.vault_addr, token="root")
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    policy = 'path "secret/*" { capabilities = ["create","read","update","delete","list"] }'
    root.sys.create_or_update_policy("osi-worker", policy)
    root.auth.approle.create_or_update_approle("osi-worker", token_policies=["osi-worker"])
    role_id = root.auth.approle.read_role_id("osi-worker")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("osi-worker")["data"]["secret_id"]
    v = VaultClient(stack.vault_addr, role_id=role_id, secret_id=secret_id)
    p = path(v)
    v.write_sync(p, BearerTokenCredentials(token=SecretStr("via-approle")))
    got = v.read_versioned_sync(p, use_cache=False).credentials
    assert isinstance(got, BearerTokenCredentials) and got.token.get_secret_value() == "via-approle"


async def test_concurrent_refresh_in_two_workers_happens_once(stack) -> None:
    """Two workers (separate clients and refreshers) race to refresh a one-shot refresh token."""
    w1 = VaultClient(stack.vault_addr, token="root")
    w2 = VaultClient(stack.vault_addr, token="root")
    p = path(w1)
    await w1.write(p, OAuth2Credentials(access_token=SecretStr("a0"), refresh_token=SecretStr("r0"),
                                        expires_at=datetime.now(UTC) + timedelta(seconds=30)))
    used: list[str] = []

    async def provider_refresh(cur: OAuth2Credentials) -> OAuth2Credentials:
        assert cur.refresh_token is not None
        rt = cur.refresh_token.get_secret_value()
        if rt in used:  # a one-shot refresh token used twice: the provider refuses
            raise RuntimeError("invalid_refresh_token")
        used.append(rt)
        await asyncio.sleep(0.2)
        n = len(used)
        return OAuth2Credentials(access_token=SecretStr(f"a{n}"), refresh_token=SecretStr(f"r{n}"),
                                 expires_at=datetime.now(UTC) + timedelta(hours=12))

    r1, r2 = TokenRefresher(w1), TokenRefresher(w2)
    results = await asyncio.gather(*(r.ensure_fresh(p, provider_refresh, ahead_seconds=120)
                                     for r in (r1, r2, r1, r2)))
    assert used == ["r0"]
    assert {c.access_token.get_secret_value() for c in results} == {"a1"}
    stored = await w1.read(p, use_cache=False)
    assert isinstance(stored, OAuth2Credentials) and stored.refresh_token is not None
    assert stored.refresh_token.get_secret_value() == "r1"
    # The caller's token was rejected (token_expired) but someone already replaced it: no second refresh.
    again = await r2.ensure_fresh(p, provider_refresh, stale_access_token="a0")
    assert again.access_token.get_secret_value() == "a1" and used == ["r0"]
    forced = await r2.ensure_fresh(p, provider_refresh, stale_access_token="a1")
    assert forced.access_token.get_secret_value() == "a2" and used == ["r0", "r1"]


async def test_failed_refresh_releases_the_claim(stack) -> None:
    v = VaultClient(stack.vault_addr, token="root")
    p = path(v)
    await v.write(p, OAuth2Credentials(access_token=SecretStr("a"), refresh_token=SecretStr("r"),
                                       expires_at=datetime.now(UTC)))

    async def boom(_: OAuth2Credentials) -> OAuth2Credentials:
        raise RuntimeError("invalid_grant")

    with pytest.raises(RuntimeError):
        await TokenRefresher(v).ensure_fresh(p, boom)
    meta = v.read_versioned_sync(p, use_cache=False).metadata
    assert "refresh_claim" not in meta
