"""WhatsApp's settings section (`OSI_WHATSAPP_…`): Cloud API base URL and version, conversation lifetime."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field

from core.settings import ApiSettings, section_config


class WhatsAppSettings(ApiSettings):
    model_config = section_config("OSI_WHATSAPP_")
    section_name: ClassVar[str] = "whatsapp"

    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    # A conversation with no event for this long ends (its state is kept in the store).
    conversation_idle_hours: float = Field(default=72.0, gt=0, validation_alias=AliasChoices(
        "OSI_WHATSAPP_CONVERSATION_IDLE_HOURS", "OSI_CONVERSATION_IDLE_HOURS", "conversation_idle_hours"))
    # History events before a conversation continues as new.
    conversation_history_limit: int = Field(default=2000, ge=100, validation_alias=AliasChoices(
        "OSI_WHATSAPP_CONVERSATION_HISTORY_LIMIT", "OSI_CONVERSATION_HISTORY_LIMIT", "conversation_history_limit"))

    # A send whose answer was lost (timeout, crash) is not sent again until Meta's status webhook naming it
    # (biz_opaque_callback_data) has had this long to arrive; a connection's `reconcile_seconds` overrides it.
    reconcile_seconds: float = Field(default=60.0, ge=0)

    @classmethod
    def sandbox_overrides(cls, sandbox_url: str) -> dict[str, Any]:
        return {"base_url": f"{sandbox_url}/whatsapp"}
