"""How a WhatsApp send names its intent: `biz_opaque_callback_data`, echoed by Meta in every status webhook."""

from __future__ import annotations

PREFIX = "osi:"


def callback_data(intent_id: str) -> str:
    return f"{PREFIX}{intent_id}"


def intent_of(callback: str | None) -> str | None:
    """The intent id a status webhook names, or None for callback data that is not ours."""
    if not callback or not callback.startswith(PREFIX):
        return None
    found = callback[len(PREFIX):]
    return found if found.isalnum() and len(found) <= 64 else None
