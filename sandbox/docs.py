"""An offline docs page for the sandbox: its OpenAPI paths rendered server-side, no CDN assets."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

METHODS = ("get", "post", "put", "patch", "delete")
# Docstrings cite provider docs; the page must load nothing from outside, so links are shown as text.
URL_RE = re.compile(r"https?://\S+")

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td{padding:.25rem .5rem;vertical-align:top;border-top:1px solid #eee}
code{font-size:.95em}.m{font-weight:600;width:4.5rem}.get{color:#1a7f37}.post{color:#0550ae}
.put,.patch{color:#9a6700}.delete{color:#cf222e}.d{color:#555}
"""


def _describe(op: dict[str, Any]) -> str:
    text = str(op.get("description") or op.get("summary") or "").strip().split("\n\n", 1)[0]
    return URL_RE.sub("[link]", " ".join(text.split()))


def _section(path: str) -> str:
    parts = path.strip("/").split("/")
    return "/".join(parts[:2]) if parts and parts[0] == "_sandbox" and len(parts) > 1 else parts[0] or "/"


def render(spec: dict[str, Any]) -> str:
    """Group operations by provider (or by sandbox control area) and list them with their docs."""
    groups: dict[str, list[str]] = {}
    for path, item in sorted(spec.get("paths", {}).items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = ", ".join(html.escape(str(p.get("name"))) for p in op.get("parameters", [])
                               if p.get("in") == "query")
            row = (f"<tr><td class='m {method}'>{method.upper()}</td><td><code>{html.escape(path)}</code>"
                   + (f"<br><small>query: {params}</small>" if params else "")
                   + f"</td><td class='d'>{html.escape(_describe(op))}</td></tr>")
            groups.setdefault(_section(path), []).append(row)
    body = "".join(f"<h2>{html.escape(name)}</h2><table>{''.join(rows)}</table>" for name, rows in groups.items())
    title = html.escape(str(spec.get("info", {}).get("title", "sandbox")))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
            f"</head><body><h1>{title}</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. "
            f"Every provider fake and every control endpoint, rendered without external assets.</p>"
            f"{body}</body></html>")


def mount(app: FastAPI, path: str = "/_sandbox/docs") -> None:
    @app.get(path, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(render(app.openapi()))
