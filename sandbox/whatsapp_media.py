"""The WhatsApp fake's media endpoints: upload (multipart), look up, download with the token, delete."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from sandbox.graph_errors import graph_error

if TYPE_CHECKING:
    from sandbox.whatsapp import WhatsAppFake

MB = 1024 * 1024
# Meta's accepted media types and sizes (the service checks the same before uploading).
LIMITS = {
    "image/jpeg": 5 * MB, "image/png": 5 * MB, "image/webp": 500 * 1024, "video/mp4": 16 * MB,
    "video/3gpp": 16 * MB, "audio/aac": 16 * MB, "audio/amr": 16 * MB, "audio/mpeg": 16 * MB,
    "audio/mp4": 16 * MB, "audio/ogg": 16 * MB, "text/plain": 100 * MB, "application/pdf": 100 * MB,
    "application/msword": 100 * MB, "application/vnd.ms-excel": 100 * MB, "application/vnd.ms-powerpoint": 100 * MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * MB,
}


@dataclass
class StoredMedia:
    media_id: str
    phone_number_id: str
    mime_type: str
    data: bytes
    sha256: str
    filename: str


class MediaEndpoints:
    """Bound to the WhatsApp fake (its numbers, tokens and error envelope)."""

    def __init__(self, fake: WhatsAppFake) -> None:
        self.fake = fake
        self.media: dict[str, StoredMedia] = {}

    async def upload(self, pid: str, request: Request) -> Response:
        num = self.fake.authorize(request, pid)
        if isinstance(num, JSONResponse):
            return num
        form = await request.form()
        if form.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return graph_error(400, 100, "(#100) The parameter file is required.")
        mime = str(form.get("type") or upload.content_type or "").lower()
        data = await upload.read()
        if mime not in LIMITS:
            return graph_error(400, 131053, "Media upload error", etype="OAuthException",
                               details=f"Unsupported file type: {mime or 'none'}")
        if len(data) > LIMITS[mime]:
            return graph_error(400, 131053, "Media upload error",
                               details=f"File size {len(data)} exceeds the {LIMITS[mime]}-byte limit for {mime}")
        item = self.received(pid, mime, data, upload.filename or "file")
        return JSONResponse({"id": item.media_id})

    def received(self, pid: str, mime: str, data: bytes, filename: str = "file") -> StoredMedia:
        """Store media for a number (uploaded by the business, or sent by a customer)."""
        item = StoredMedia(str(10**15 + secrets.randbelow(9 * 10**15)), pid, mime, data,
                           hashlib.sha256(data).hexdigest(), filename)
        self.media[item.media_id] = item
        return item

    def owned(self, request: Request, media_id: str) -> StoredMedia | Response:
        """The media if the token belongs to the number that uploaded (or received) it."""
        token = self.fake._token(request)
        if isinstance(token, JSONResponse):
            return token
        item = self.media.get(media_id)
        if item is None or self.fake.state.numbers[item.phone_number_id].token != token:
            return self.fake._missing_object(media_id, request.method)
        return item

    def view(self, request: Request, item: StoredMedia) -> Response:
        url = f"{str(request.base_url).rstrip('/')}/whatsapp/media-files/{item.media_id}"
        return JSONResponse({"messaging_product": "whatsapp", "url": url, "mime_type": item.mime_type,
                             "sha256": item.sha256, "file_size": len(item.data), "id": item.media_id})

    def delete(self, request: Request, media_id: str) -> Response:
        item = self.owned(request, media_id)
        if not isinstance(item, StoredMedia):
            return item
        del self.media[media_id]
        return JSONResponse({"success": True})

    def download(self, request: Request, media_id: str) -> Response:
        """Like Meta's media URL: only with the token of the number's app (401 without it)."""
        item = self.owned(request, media_id)
        if not isinstance(item, StoredMedia):
            return Response(status_code=401 if not request.headers.get("authorization") else 404)
        return Response(item.data, media_type=item.mime_type)
