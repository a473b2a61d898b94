"""The sandbox docs page works offline: no CDN assets, every route listed."""

from __future__ import annotations

import re

import httpx

from sandbox.app import create_app


async def test_docs_page_is_self_contained_and_lists_the_fakes():
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as http:
        r = await http.get("/_sandbox/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        page = r.text
        assert not re.search(r"https?://|//cdn|<script|<link", page, re.IGNORECASE)
        for path in ("/whatsapp/{version}/{pid}/{action}", "/slack/api/{method}",
                     "/google/calendar/v3/calendars/{calendar_id}/events", "/_sandbox/whatsapp/messages",
                     "/_sandbox/slack/messages", "/_sandbox/answers"):
            assert f"<code>{path}</code>" in page
        assert "callback_data" in page  # query parameters are listed
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/redoc")).status_code == 404  # the stock CDN page is off
