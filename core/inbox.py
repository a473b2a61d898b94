"""Deliveries we verified but could not parse or process are kept raw (`webhook_inbox`) instead of lost, and
replayed through the same route later (`osi webhooks replay`) with the signature check skipped: it was checked
when the delivery arrived, and only an in-process replay can set the marker (it is not an HTTP header)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse

from store import inbox

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger("osi.inbox")

REPLAY_SCOPE_KEY = "osi.replay"  # set in the ASGI scope by the replaying process, never by a client


def is_replay(request: Request) -> bool:
    return bool(request.scope.get(REPLAY_SCOPE_KEY))


async def keep(rt: Runtime, provider: str, request: Request, raw: bytes, error: str) -> int:
    """Keep a verified delivery for replay (deduplicated by route and body); its id."""
    if is_replay(request):
        return int(request.scope[REPLAY_SCOPE_KEY])
    delivery_id = await rt.store.run(inbox.keep, rt.store, provider, request.url.path, raw,
                                     request.headers.get("content-type"), error)
    log.warning("%s delivery kept for replay as #%s: %s", provider, delivery_id, error)
    return delivery_id


async def refuse(rt: Runtime, provider: str, request: Request, raw: bytes, error: str,
                 status: int = 400) -> JSONResponse:
    """A 4xx naming the problem, after keeping the verified delivery for replay."""
    delivery_id = await keep(rt, provider, request, raw, error)
    return JSONResponse({"error": error, "kept_for_replay": delivery_id}, status_code=status)
