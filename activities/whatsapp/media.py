"""WhatsApp media: upload from a URL after checking Meta's types and sizes, look up, delete."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.models import MediaInfo, MediaRefInput, UploadMediaInput, UploadMediaResult
from activities.whatsapp.provider import PROVIDER
from core.egress import EgressRefused
from core.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    from core.runtime import Runtime

MB = 1024 * 1024
# Meta's supported media: MIME type → (message type that carries it, largest accepted size).
MEDIA_TYPES: dict[str, tuple[str, int]] = {
    "image/jpeg": ("image", 5 * MB),
    "image/png": ("image", 5 * MB),
    "image/webp": ("sticker", 500 * 1024),  # animated stickers; static ones are limited to 100 KB by Meta
    "video/mp4": ("video", 16 * MB),
    "video/3gpp": ("video", 16 * MB),
    "audio/aac": ("audio", 16 * MB),
    "audio/amr": ("audio", 16 * MB),
    "audio/mpeg": ("audio", 16 * MB),
    "audio/mp4": ("audio", 16 * MB),
    "audio/ogg": ("audio", 16 * MB),  # OPUS codec only
    "text/plain": ("document", 100 * MB),
    "application/pdf": ("document", 100 * MB),
    "application/msword": ("document", 100 * MB),
    "application/vnd.ms-excel": ("document", 100 * MB),
    "application/vnd.ms-powerpoint": ("document", 100 * MB),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("document", 100 * MB),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("document", 100 * MB),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ("document", 100 * MB),
}


def media_kind(mime_type: str, size: int | None = None) -> tuple[str, int]:
    """(message type, size limit) for a MIME type, or a PermanentError naming what Meta accepts."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime not in MEDIA_TYPES:
        raise PermanentError(f"mime_type: {mime!r} is not a WhatsApp media type (accepted: "
                             f"{', '.join(sorted(MEDIA_TYPES))})", code="unsupported_media_type",
                             details={"field": "mime_type"})
    kind, limit = MEDIA_TYPES[mime]
    if size is not None and size > limit:
        raise PermanentError(f"source_url: {size:,} bytes is over WhatsApp's {limit:,}-byte limit for {kind} "
                             f"({mime})", code="media_too_large", details={"field": "source_url", "limit": limit})
    return kind, limit


async def fetch_source(rt: Runtime, inp: UploadMediaInput) -> tuple[bytes, str, str]:
    """(content, MIME type, message kind), refusing what Meta would refuse before downloading all of it. The URL
    is a workflow input: it goes through the egress guard (public https only, pinned address, redirects
    re-checked), so it cannot reach the worker's private network (cloud metadata, internal services)."""
    if inp.mime_type:
        media_kind(inp.mime_type)
    egress = rt.egress
    try:
        egress.check_static(inp.source_url)
        async with egress.client.stream("GET", inp.source_url) as resp:
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                raise TemporaryError(f"source_url answered HTTP {resp.status_code}", code="source_unavailable")
            if resp.status_code != 200:
                raise PermanentError(f"source_url answered HTTP {resp.status_code}", code="source_not_found",
                                     details={"field": "source_url", "status": resp.status_code})
            mime = (inp.mime_type or resp.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            if not mime:
                raise PermanentError("mime_type: the source sent no Content-Type; give mime_type",
                                     code="unsupported_media_type", details={"field": "mime_type"})
            declared = resp.headers.get("content-length")
            kind, limit = media_kind(mime, int(declared) if declared and declared.isdigit() else None)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:  # stop reading at once: the size check is what protects the worker
                    media_kind(mime, size)
                chunks.append(chunk)
    except EgressRefused as exc:
        raise PermanentError(f"source_url: {exc}", code="invalid_source_url",
                             details={"field": "source_url"}) from None
    except httpx.TooManyRedirects:
        raise PermanentError("source_url: too many redirects", code="source_not_found",
                             details={"field": "source_url"}) from None
    except httpx.TimeoutException:
        raise TemporaryError("source_url timed out", code="source_timeout") from None
    except httpx.TransportError as exc:
        raise TemporaryError(f"source_url unreachable: {type(exc).__name__}", code="source_unreachable") from None
    return b"".join(chunks), mime, kind


async def upload(rt: Runtime, inp: UploadMediaInput) -> UploadMediaResult:
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.upload_media",
                         target=inp.source_url[:200]) as act:
        content, mime, kind = await fetch_source(rt, inp)
        filename = inp.filename or (urlsplit(inp.source_url).path.rsplit("/", 1)[-1] or "file")
        client = WhatsAppClient(act)
        resp = await act.call("POST", client.url(client.phone_number_id, "media"),
                              data={"messaging_product": "whatsapp", "type": mime},
                              files={"file": (filename, content, mime)})
        media_id = str(resp.json()["id"])
        act.detail.update({"media_id": media_id, "size": len(content), "mime_type": mime})
        return UploadMediaResult(media_id=media_id, kind=kind, mime_type=mime, size=len(content),
                                 sha256=hashlib.sha256(content).hexdigest())


async def _on_media(rt: Runtime, inp: MediaRefInput, method: str, action: str) -> dict[str, Any]:
    """GET or DELETE /{media-id} for the connection's number, as one pipeline action."""
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, action, target=inp.media_id) as act:
        client = WhatsAppClient(act)
        resp = await act.call(method, client.url(inp.media_id), params={"phone_number_id": client.phone_number_id})
        return dict(resp.json())


async def info(rt: Runtime, inp: MediaRefInput) -> MediaInfo:
    body = await _on_media(rt, inp, "GET", "whatsapp.media_info")
    return MediaInfo(media_id=str(body["id"]), url=str(body["url"]), mime_type=str(body["mime_type"]),
                     sha256=str(body["sha256"]), file_size=int(body["file_size"]))


async def delete(rt: Runtime, inp: MediaRefInput) -> bool:
    return bool((await _on_media(rt, inp, "DELETE", "whatsapp.delete_media")).get("success"))
