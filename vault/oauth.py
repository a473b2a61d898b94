"""OAuth token refresh coordinated across workers: one refresh per connection, none lost."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from vault.client import CASConflict, VaultClient
from vault.credentials import OAuth2Credentials

Refresher = Callable[[OAuth2Credentials], Awaitable[OAuth2Credentials]]



class RefreshTimeout(Exception):
    """Another worker claimed the refresh and did not finish in time."""


class TokenRefresher:
    """Refresh ahead of expiry with a Vault check-and-set claim.

    Rotating refresh tokens (Slack, Microsoft) are one-shot: if two workers refreshed with the
    same refresh token, one would get `invalid_refresh_token` and could overwrite the good token.
    So a worker first claims the refresh by a CAS write of the current version; losers wait for the
    winner's write and use its token. In-process callers are serialised by an asyncio lock.
    """

    def __init__(self, vault: VaultClient, *, claim_seconds: float = 30.0, poll_seconds: float = 0.05) -> None:
        self.vault = vault
        self.claim_seconds = claim_seconds
        self.poll_seconds = poll_seconds
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.refresh_count = 0  # observed by tests and metrics
        # Unique per refresher (one per worker runtime), so two runtimes in one process still race fairly.
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def ensure_fresh(
        self,
        path: str,
        refresher: Refresher,
        *,
        ahead_seconds: float = 300.0,
        stale_access_token: str | None = None,
    ) -> OAuth2Credentials:
        """Fresh credentials; refresh when expiring within `ahead_seconds` or when the caller's
        token (`stale_access_token`) was rejected and nobody has replaced it yet."""
        current = await self.vault.read(path)
        if isinstance(current, OAuth2Credentials) and not self._needs(current, ahead_seconds, stale_access_token):
            return current
        async with self._locks[path]:
            deadline = time.monotonic() + self.claim_seconds * 2
            while True:
                v = await self.vault.read_versioned(path, use_cache=False)
                creds = v.credentials
                if not isinstance(creds, OAuth2Credentials):
                    raise TypeError(f"credentials at {path} are not OAuth2")
                if not self._needs(creds, ahead_seconds, stale_access_token):
                    return creds
                claim = v.metadata.get("refresh_claim") or {}
                if claim and float(claim.get("until", 0)) > time.time() and claim.get("by") != self.claimant:
                    if time.monotonic() > deadline:
                        raise RefreshTimeout(f"refresh of {path} claimed by another worker")
                    await asyncio.sleep(self.poll_seconds)
                    continue
                try:
                    claimed = await self.vault.write(
                        path,
                        creds,
                        cas=v.version,
                        extra={"refresh_claim": {"by": self.claimant, "until": time.time() + self.claim_seconds}},
                    )
                except CASConflict:
                    continue  # somebody wrote first: re-read and decide again
                try:
                    fresh = await refresher(creds)
                except BaseException:
                    # Release the claim so the next caller can try (or see the re-auth state).
                    try:
                        await self.vault.write(path, creds, cas=claimed)
                    except CASConflict:
                        pass
                    raise
                self.refresh_count += 1
                await self.vault.write(path, fresh, cas=claimed)
                return fresh

    @staticmethod
    def _needs(creds: OAuth2Credentials, ahead: float, stale: str | None) -> bool:
        if stale is not None and creds.access_token.get_secret_value() == stale:
            return True
        return creds.refresh_token is not None and creds.expires_within(ahead, datetime.now(UTC))
