"""Dashboard sessions: sign in once with an admin key; a signed cookie (HttpOnly, SameSite=Strict, Secure outside
local development) remembers which key, and a CSRF token derived from the session guards every form.

The cookie holds no secret: the admin key's id (or a fingerprint of the operator key), its organization scope,
an expiry and a random nonce, signed with HMAC-SHA256 under a key kept in Vault (shared by every gateway
replica, created on first use). Each request checks the admin key is still valid, so revoking it ends its
sessions at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from core.runtime import Runtime
from vault.client import CredentialsMissing, VaultError
from vault.credentials import AppSecrets

COOKIE = "osi_session"
SESSION_SECONDS = 12 * 3600
SESSION_KEY_APP = "gateway-sessions"  # Vault: osi/apps/gateway-sessions (signing_secret)


@dataclass(frozen=True)
class Session:
    key_ref: str  # "key:<admin key id>" or "operator:<fingerprint>"
    label: str
    organization_id: str | None  # None: every organization (the operator key)
    expires: int
    nonce: str

    def may_access(self, organization_id: str) -> bool:
        return self.organization_id is None or self.organization_id == organization_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(rt: Runtime) -> bytes:
    """The HMAC key of session cookies, from Vault (created once; every replica reads the same one)."""
    cached: bytes | None = rt.extras.get(SESSION_KEY_APP)
    if cached is not None:
        return cached
    try:
        app = rt.vault.read_app_sync(SESSION_KEY_APP)
        key = app.signing_secret.get_secret_value() if app.signing_secret else ""
    except CredentialsMissing:
        key = ""
    if not key:
        key = secrets.token_urlsafe(48)
        rt.vault.write_app_sync(SESSION_KEY_APP, AppSecrets(signing_secret=SecretStr(key)))
    rt.extras[SESSION_KEY_APP] = key.encode()
    return key.encode()


def encode(rt: Runtime, session: Session) -> str:
    body = _b64(json.dumps({"k": session.key_ref, "l": session.label, "o": session.organization_id,
                            "e": session.expires, "n": session.nonce}, separators=(",", ":")).encode())
    mac = hmac.new(signing_key(rt), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def decode(rt: Runtime, cookie: str | None) -> Session | None:
    """The session of a cookie whose signature holds and which has not expired; None otherwise (also when
    Vault cannot give the signing key: nobody is signed in rather than an error page)."""
    if not cookie or "." not in cookie:
        return None
    body, _, mac = cookie.partition(".")
    try:
        expected = hmac.new(signing_key(rt), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(body))
        session = Session(str(data["k"]), str(data["l"]), data["o"], int(data["e"]), str(data["n"]))
    except (VaultError, ValueError, KeyError, TypeError):
        return None
    return session if session.expires > time.time() else None


def new_session(key_ref: str, label: str, organization_id: str | None) -> Session:
    return Session(key_ref, label, organization_id, int(time.time()) + SESSION_SECONDS, secrets.token_urlsafe(16))


def csrf_token(rt: Runtime, session: Session) -> str:
    """Bound to this session: a form from another session (or another site) does not carry it."""
    return _b64(hmac.new(signing_key(rt), f"csrf:{session.nonce}".encode(), hashlib.sha256).digest())


def csrf_ok(rt: Runtime, session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(rt, session).encode(), (token or "").encode())


def operator_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def secure_cookie(public_url: str) -> bool:
    """Secure everywhere except plain-http local development (a browser would never send it back there)."""
    parts = urlsplit(public_url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return not (parts.scheme == "http" and local)
