"""WhatsApp media: upload from a URL after checking Meta's types and sizes, look up, delete, and download
what customers sent (Meta's URL lookup, then the download with the connection's token)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.models import (
    DownloadMediaInput,
    DownloadMediaResult,
    MediaInfo,
    MediaRefInput,
    UploadMediaInput,
    UploadMediaResult,
)
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


DOWNLOAD_LIMIT = 100 * MB  # Meta's largest media (documents)


def _same_hash(meta: str | None, digest: bytes) -> bool:
    """Meta gives sha256 as hex (media lookup) or base64 (webhooks)."""
    if not meta:
        return True
    if meta.lower() == digest.hex():
        return True
    try:
        return base64.b64decode(meta, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def _http_error(what: str, status: int) -> TemporaryError | PermanentError:
    if status in (408, 429) or status >= 500:
        return TemporaryError(f"{what} answered HTTP {status}", code="media_unavailable")
    return PermanentError(f"{what} answered HTTP {status} (media ids expire after about 30 days)",
                          code="media_not_found", details={"status": status})


async def _fetch_media(rt: Runtime, url: str, headers: dict[str, str], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with rt.http.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                raise _http_error("the media download", resp.status_code)
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise PermanentError(f"media is larger than {limit:,} bytes", code="media_too_large")
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise TemporaryError("the media download timed out", code="media_timeout") from None
    except httpx.TransportError as exc:
        raise TemporaryError(f"the media download failed: {type(exc).__name__}", code="media_unreachable") from None
    return b"".join(chunks)


async def download(rt: Runtime, inp: DownloadMediaInput) -> DownloadMediaResult:
    """GET /{media-id} for the short-lived URL, then GET that URL with the connection's token (Meta refuses it
    without); the bytes' SHA-256 is checked against Meta's. Inline when small, else PUT to `upload_url`."""
    if inp.upload_url:
        try:  # OpenSyte's URL: checked before Meta is asked, through the egress guard when used
            await rt.egress.resolve(inp.upload_url)
        except EgressRefused as exc:
            raise PermanentError(f"upload_url refused: {exc}", code="egress_refused",
                                 details={"field": "upload_url"}) from None
    async with rt.action(PROVIDER, inp.organization_id, inp.connection, "whatsapp.download_media",
                         target=inp.media_id) as act:
        client = WhatsAppClient(act)
        found = (await act.call("GET", client.url(inp.media_id),
                                params={"phone_number_id": client.phone_number_id})).json()
        mime = str(found.get("mime_type") or "application/octet-stream")
        declared = int(found.get("file_size") or 0)
        if not inp.upload_url and declared > inp.max_inline_bytes:
            raise PermanentError(f"media {inp.media_id} has {declared:,} bytes, more than max_inline_bytes "
                                 f"({inp.max_inline_bytes:,}): give upload_url to receive it there",
                                 code="media_too_large", details={"field": "max_inline_bytes"})
        headers = act.provider.auth_headers(await act.credentials())
        limit = DOWNLOAD_LIMIT if inp.upload_url else inp.max_inline_bytes
        content = await _fetch_media(rt, str(found["url"]), headers, limit)
        digest = hashlib.sha256(content).digest()
        if not _same_hash(found.get("sha256"), digest):
            raise TemporaryError("the downloaded media does not match Meta's SHA-256", code="media_corrupt")
        act.detail.update({"media_id": inp.media_id, "size": len(content), "mime_type": mime})
    result = DownloadMediaResult(media_id=inp.media_id, mime_type=mime, size=len(content), sha256=digest.hex())
    if not inp.upload_url:
        return result.model_copy(update={"content_base64": base64.b64encode(content).decode()})
    try:
        put = await rt.egress.client.request("PUT", inp.upload_url, content=content, headers={"Content-Type": mime})
    except EgressRefused as exc:
        raise PermanentError(f"upload_url refused: {exc}", code="egress_refused",
                             details={"field": "upload_url"}) from None
    except httpx.HTTPError as exc:
        raise TemporaryError(f"upload_url unreachable: {type(exc).__name__}", code="upload_unreachable") from None
    if not 200 <= put.status_code < 300:
        raise _http_error("upload_url", put.status_code)
    return result.model_copy(update={"uploaded_to": inp.upload_url.split("?", 1)[0]})
