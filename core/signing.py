"""Signed webhooks we send (alerts, events to OpenSyte): `v1=` HMAC-SHA256 of `timestamp + "." + body`.

One implementation for every sender and for receivers' checks (tests, the TypeScript client mirrors it):
headers `X-OSI-Timestamp` (Unix seconds of this attempt) and `X-OSI-Signature: v1=<hex>`; a receiver
rejects a signature that does not match the raw body or a timestamp more than 300 s from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

SIGNATURE_HEADER = "X-OSI-Signature"
TIMESTAMP_HEADER = "X-OSI-Timestamp"
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` HMAC-SHA256 of `timestamp.body`: receivers check it and reject old timestamps (replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = TOLERANCE_SECONDS,
           now: Callable[[], float] = time.time) -> bool:
    """What a receiver does: constant-time compare on the raw bytes, timestamp within `tolerance` either way.
    Never raises on garbage (a bad header is a refusal)."""
    try:
        fresh = abs(now() - int(timestamp)) <= tolerance
    except (TypeError, ValueError):
        return False
    if not fresh or not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.strip().encode())


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)
