"""Slack message metadata (chat.postMessage `metadata`) and conversations.history for the Slack fake."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi.responses import JSONResponse

# docs.slack.dev/messaging/message-metadata: "Event types can contain letters, numbers, underscores,
# and hyphens, but not periods or other punctuation."
EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
HISTORY_LIMIT_DEFAULT = 100
HISTORY_LIMIT_MAX = 999  # "Maximum of 999" (conversations.history `limit`)
HIDDEN_KEYS = ("received_at", "team")  # the fake's bookkeeping, never shown to clients


class MetadataResult:
    """What Slack makes of a `metadata` argument: kept, dropped with a warning, or refused."""

    def __init__(self, metadata: dict[str, Any] | None = None, error: str | None = None,
                 warning: str | None = None) -> None:
        self.metadata, self.error, self.warning = metadata, error, warning


def parse_metadata(raw: Any) -> MetadataResult:
    """A JSON object (or its JSON text, as form bodies carry it) with `event_type` and `event_payload`.

    Not JSON / not an object → the `invalid_metadata_format` error (nothing is posted). A bad
    `event_type` or a non-object `event_payload` → the message is posted, the metadata ignored, and
    `invalid_metadata_schema` comes back as a warning (docs.slack.dev message-metadata; reported in
    slackapi/bolt-python#863 for an event_type with a period).
    """
    if raw is None or raw == "":
        return MetadataResult()
    doc = raw
    if isinstance(raw, str):
        try:
            doc = json.loads(raw)
        except ValueError:
            return MetadataResult(error="invalid_metadata_format")
    if not isinstance(doc, dict):
        return MetadataResult(error="invalid_metadata_format")
    event_type, payload = doc.get("event_type"), doc.get("event_payload")
    if not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type) or not isinstance(payload, dict):
        return MetadataResult(warning="invalid_metadata_schema")
    return MetadataResult({"event_type": event_type, "event_payload": payload})


def client_view(msg: dict[str, Any], include_all_metadata: bool, declared: set[str]) -> dict[str, Any]:
    """A stored message as methods return it. Slack strips `event_payload` unless the caller asks for all
    metadata or the app's manifest declares the event type; `event_type` stays (python-slack-sdk#1501)."""
    view = {k: v for k, v in msg.items() if k not in HIDDEN_KEYS}
    meta = msg.get("metadata")
    if meta is not None and not include_all_metadata and meta["event_type"] not in declared:
        view["metadata"] = {"event_type": meta["event_type"]}
    return view


def ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def _bound(value: Any) -> Decimal | None:
    try:
        bound = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return bound if bound.is_finite() and bound >= 0 else None


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _cursor(ts: str) -> str:
    # Slack's own history cursors decode to "next_ts:<ts without the dot>" (docs example).
    return base64.b64encode(f"next_ts:{ts.replace('.', '')}".encode()).decode()


def _from_cursor(cursor: str) -> Decimal | None:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    digits = text.removeprefix("next_ts:")
    if not text.startswith("next_ts:") or not digits.isdigit() or len(digits) <= 6:
        return None
    return Decimal(f"{digits[:-6]}.{digits[-6:]}")


def history(messages: list[dict[str, Any]], args: dict[str, Any], declared: set[str]) -> JSONResponse:
    """conversations.history over one channel's stored messages: newest first, `oldest`/`latest`
    (exclusive unless `inclusive`), `limit` (default 100, at most 999), cursor pagination."""
    oldest = _bound(args.get("oldest") or "0")
    if oldest is None:
        return JSONResponse({"ok": False, "error": "invalid_ts_oldest"})
    # No `latest` means "now", i.e. everything posted so far: no upper bound at all (the fake's ts
    # fractions are a counter, not sub-second time, so comparing them with the clock would be wrong).
    latest = _bound(args["latest"]) if args.get("latest") else None
    if args.get("latest") and latest is None:
        return JSONResponse({"ok": False, "error": "invalid_ts_latest"})
    inclusive = _flag(args.get("inclusive"))
    try:
        limit = int(args.get("limit") or HISTORY_LIMIT_DEFAULT)
    except ValueError:
        limit = HISTORY_LIMIT_DEFAULT
    limit = max(1, min(limit, HISTORY_LIMIT_MAX))
    start: Decimal | None = None
    if args.get("cursor"):
        start = _from_cursor(str(args["cursor"]))
        if start is None:
            return JSONResponse({"ok": False, "error": "invalid_cursor"})

    def wanted(m: dict[str, Any]) -> bool:
        ts = ts_key(m["ts"])
        # Thread replies live in conversations.replies; only broadcast ones show in the channel.
        if m.get("thread_ts") and m["thread_ts"] != m["ts"] and not m.get("reply_broadcast"):
            return False
        after = ts >= oldest if inclusive else ts > oldest
        before = latest is None or (ts <= latest if inclusive else ts < latest)
        return after and before and (start is None or ts <= start)

    chosen = sorted((m for m in messages if wanted(m)), key=lambda m: ts_key(m["ts"]), reverse=True)
    page, rest = chosen[:limit], chosen[limit:]
    everything = _flag(args.get("include_all_metadata"))
    doc: dict[str, Any] = {"ok": True, "messages": [client_view(m, everything, declared) for m in page],
                           "has_more": bool(rest), "pin_count": 0, "channel_actions_ts": None,
                           "channel_actions_count": 0}
    for name in ("oldest", "latest"):
        if args.get(name):
            doc[name] = str(args[name])
    if rest:
        doc["response_metadata"] = {"next_cursor": _cursor(rest[0]["ts"])}
    return JSONResponse(doc)
