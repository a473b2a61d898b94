"""The codec endpoint answers the Web UI whichever loopback name the operator typed, and nobody else."""

from __future__ import annotations

import httpx


async def test_codec_cors_accepts_both_loopback_spellings_of_the_ui(gateway, settings) -> None:
    ui = settings.temporal_ui_url.rstrip("/")
    as_localhost = ui.replace("//127.0.0.1:", "//localhost:")
    async with httpx.AsyncClient() as http:
        for origin, allowed in ((ui, ui), (as_localhost, as_localhost), ("https://evil.example", ui)):
            resp = await http.options(f"{gateway}/codec/decode", headers={"Origin": origin})
            assert resp.status_code == 204
            assert resp.headers["access-control-allow-origin"] == allowed
            assert resp.headers["vary"] == "Origin"
