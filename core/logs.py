"""Logging for every process: level and format (text or one JSON object per line) from settings."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, plus the structured `osi` fields a record carries."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "osi", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the structured fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "osi", None)
        if isinstance(fields, dict):
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return line


# Known secret shapes, redacted from every log line as a second line of defence (the first: never log them).
SECRET_PATTERNS = re.compile(
    r"xox[abposr]-[A-Za-z0-9-]{8,}"  # Slack bot/user/app/refresh tokens
    r"|xapp-[A-Za-z0-9-]{8,}"  # Slack app-level tokens
    r"|EAA[A-Za-z0-9]{16,}"  # Meta (WhatsApp Cloud API) access tokens
    r"|ya29\.[A-Za-z0-9_.-]{8,}"  # Google OAuth access tokens
    r"|1//[A-Za-z0-9_-]{20,}"  # Google refresh tokens
    r"|(?:whsec|osk)_[A-Za-z0-9_-]{8,}"  # our alert-webhook signing secrets and admin API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"  # any bearer credential in a header dump
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return SECRET_PATTERNS.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds a known secret shape (the message is rendered once, here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: leave it to the handler
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        fields = getattr(record, "osi", None)
        if isinstance(fields, dict):
            record.osi = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True


class AccessLogFilter(logging.Filter):
    """uvicorn's access lines without query strings: webhook verification tokens (`hub.verify_token`), OAuth
    codes and states and signed-link signatures travel there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            record.args = (*args[:2], path + ("?[query removed]" if sep else ""), *args[3:])
        return True


def install_filters(handler: logging.Handler) -> None:
    handler.addFilter(AccessLogFilter())
    handler.addFilter(RedactingFilter())


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Idempotent root configuration (the worker, gateway and local stack call it at start)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    install_filters(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' per-request chatter stays out of DEBUG unless asked for by name.
    for noisy in ("httpx", "httpcore", "hpack", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
