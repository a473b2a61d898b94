"""WhatsApp media: upload from a URL with Meta's type and size checks first, look up, download, send, delete."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp.activities import WhatsAppActivities
from activities.whatsapp.media import fetch_source, media_kind
from activities.whatsapp.models import MediaRefInput, SendMediaInput, UploadMediaInput
from core.errors import PermanentError
from tests import seed
from tests.test_whatsapp_support import customer_writes

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(256)


async def serve(sandbox, content: bytes, mime: str) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        (await http.put(f"{sandbox.url}/_sandbox/files/{name}", content=content,
                        headers={"Content-Type": mime})).raise_for_status()
    return f"{sandbox.url}/_sandbox/files/{name}"


def uploads(sandbox) -> list[dict]:
    return [r for r in sandbox.state.recorder.dump("whatsapp") if r["path"].endswith("/media")
            and r["method"] == "POST"]


async def test_upload_look_up_download_send_and_delete(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    url = await serve(sandbox, PNG, "image/png")
    up = await acts.upload_media(UploadMediaInput(organization_id=wa.organization_id, source_url=url,
                                                  filename="logo.png"))
    assert (up.kind, up.mime_type, up.size, up.sha256) == ("image", "image/png", len(PNG),
                                                            hashlib.sha256(PNG).hexdigest())
    ref = MediaRefInput(organization_id=wa.organization_id, media_id=up.media_id)
    info = await acts.media_info(ref)
    assert (info.mime_type, info.file_size, info.sha256) == ("image/png", len(PNG), up.sha256)
    async with httpx.AsyncClient() as http:
        assert (await http.get(info.url)).status_code == 401  # Meta's media URLs need the token
        got = await http.get(info.url, headers={"Authorization": f"Bearer {wa.token}"})
        assert got.content == PNG
    sent = await acts.send_media(SendMediaInput(organization_id=wa.organization_id, to="+16505551234",
                                                media_type="image", id=up.media_id, caption="Our new logo"))
    assert sent.status == "accepted"
    assert await acts.delete_media(ref) is True
    with pytest.raises(ApplicationError) as gone:
        await acts.media_info(ref)
    assert gone.value.type == "PermanentError"
    usage = [u.action for u in runtime.store.usage(wa.organization_id)]
    assert {"whatsapp.upload_media", "whatsapp.media_info", "whatsapp.delete_media"} <= set(usage)


async def test_what_meta_would_refuse_is_refused_before_uploading(runtime, sandbox) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    before = len(uploads(sandbox))

    async def refused(url: str, **kw) -> ApplicationError:
        with pytest.raises(ApplicationError) as err:
            await acts.upload_media(UploadMediaInput(organization_id=wa.organization_id, source_url=url, **kw))
        return err.value

    gif = await refused(await serve(sandbox, b"GIF89a" + os.urandom(32), "image/gif"))
    assert gif.type == "PermanentError" and "image/gif" in gif.message and "image/png" in gif.message
    big = await refused(await serve(sandbox, b"\xff\xd8" + bytes(5 * 1024 * 1024), "image/jpeg"))
    assert big.type == "PermanentError" and "5,242,880-byte limit for image" in big.message
    sticker = await refused(await serve(sandbox, bytes(600 * 1024), "image/webp"))
    assert "sticker" in sticker.message
    missing = await refused(f"{sandbox.url}/_sandbox/files/nope-{uuid.uuid4().hex}")
    assert missing.type == "PermanentError" and "HTTP 404" in missing.message
    untyped = await refused(await serve(sandbox, b"data", ""), mime_type="application/zip")
    assert "application/zip" in untyped.message
    assert len(uploads(sandbox)) == before  # nothing reached Meta


async def test_the_fake_refuses_what_meta_refuses(runtime, sandbox) -> None:
    """A direct upload that skips our checks gets Meta's 131053 (the fake is not a yes-machine)."""
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    url = f"{sandbox.url}/whatsapp/v23.0/{wa.phone_number_id}/media"
    auth = {"Authorization": f"Bearer {wa.token}"}
    async with httpx.AsyncClient() as http:
        gif = await http.post(url, headers=auth, data={"messaging_product": "whatsapp", "type": "image/gif"},
                              files={"file": ("a.gif", b"GIF89a", "image/gif")})
        assert gif.status_code == 400 and gif.json()["error"]["code"] == 131053
        no_product = await http.post(url, headers=auth, data={"type": "image/png"},
                                     files={"file": ("a.png", PNG, "image/png")})
        assert no_product.json()["error"]["code"] == 100
        other = await seed.whatsapp_connection(runtime, sandbox.url)
        ok = await http.post(url, headers=auth, data={"messaging_product": "whatsapp", "type": "image/png"},
                             files={"file": ("a.png", PNG, "image/png")})
        media_id = ok.json()["id"]
        # Another business's token cannot read it.
        foreign = await http.get(f"{sandbox.url}/whatsapp/v23.0/{media_id}",
                                 headers={"Authorization": f"Bearer {other.token}"})
        assert foreign.status_code == 400 and foreign.json()["error"]["code"] == 100


async def test_a_customers_photo_can_be_looked_up_and_downloaded(runtime, sandbox, gateway) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url, gateway)
    sent = await customer_writes(sandbox.url, wa, "+16505557001", "look at this", type="image")
    image = sandbox.state.providers["whatsapp"].state.inbound[sent["message_id"]]["image"]
    info = await WhatsAppActivities(runtime).media_info(
        MediaRefInput(organization_id=wa.organization_id, media_id=image["id"]))
    # Webhooks carry the hash base64-encoded (Meta's example: "SfInY0gG…UI="), the media lookup hex.
    assert info.mime_type == "image/jpeg" and base64.b64decode(image["sha256"]).hex() == info.sha256
    async with httpx.AsyncClient() as http:
        data = (await http.get(info.url, headers={"Authorization": f"Bearer {wa.token}"})).content
    assert data.startswith(b"\xff\xd8") and hashlib.sha256(data).hexdigest() == info.sha256


async def test_source_urls_must_be_public_https(runtime) -> None:
    for url in ("ftp://files.example.com/a.png", "https://169.254.169.254/latest",
                "https://10.0.0.7/a.png", "https://localhost/a.png", "http://files.example.com/a.png"):
        with pytest.raises(PermanentError, match="source_url"):
            await fetch_source(runtime, UploadMediaInput(organization_id="o", source_url=url,
                                                         mime_type="image/png"))


def test_media_kinds_follow_metas_table() -> None:
    assert media_kind("image/jpeg; charset=binary") == ("image", 5 * 1024 * 1024)
    assert media_kind("application/pdf")[0] == "document" and media_kind("audio/ogg")[0] == "audio"
    with pytest.raises(PermanentError, match="video/quicktime"):
        media_kind("video/quicktime")


async def test_cli_uploads_looks_up_and_deletes(cli_env, runtime, sandbox) -> None:
    from tests.test_whatsapp_cli import osi

    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    url = await serve(sandbox, b"%PDF-1.7\n" + os.urandom(64), "application/pdf")
    up = await osi("media", "upload", "--org", wa.organization_id, url, "--filename", "invoice.pdf")
    assert up.exit_code == 0, up.output
    doc = json.loads(up.output)
    assert doc["kind"] == "document" and doc["mime_type"] == "application/pdf"
    info = await osi("media", "info", doc["media_id"], "--org", wa.organization_id)
    assert json.loads(info.output)["sha256"] == doc["sha256"]
    assert json.loads((await osi("media", "delete", doc["media_id"], "--org", wa.organization_id)).output) == {
        "ok": True}
    refused = await osi("media", "upload", "--org", wa.organization_id, url, "--mime-type", "image/gif")
    assert refused.exit_code == 1 and "image/gif" in refused.output
