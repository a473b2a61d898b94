"""WhatsApp inputs and results as pydantic models (plain JSON; side-effect free for workflows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionRef(_Model):
    """Which connection of which organization to act through."""

    organization_id: str = Field(min_length=1, max_length=128)
    connection: str = Field(default="default", min_length=1, max_length=128)


class SendTextInput(ConnectionRef):
    to: str = Field(description="Recipient phone number in E.164, e.g. +16505551234")
    text: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False
    reply_to_message_id: str | None = None
    idempotency_key: str | None = None


MessageStatus = Literal["accepted", "held_for_quality_assessment", "paused", "failed", "skipped", "held"]


class SendResult(_Model):
    """One recipient's outcome: the provider message id and status, or the classified error."""

    to: str
    status: MessageStatus
    message_id: str | None = None
    wa_id: str | None = None
    error: dict[str, Any] | None = None


class SendWhatsAppMessageInput(ConnectionRef):
    """Input of the `SendWhatsAppMessage` workflow (text for now; the full type set extends it)."""

    model_config = ConfigDict(extra="forbid")

    to: list[str] = Field(min_length=1, max_length=1000, description="E.164 numbers (a single string is accepted)")
    text: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False
    idempotency_key: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class SendWhatsAppMessageResult(_Model):
    results: list[SendResult]
    sent: int = 0
    failed: int = 0

    @property
    def message_id(self) -> str | None:
        return self.results[0].message_id if self.results else None


class PhoneNumberStatus(_Model):
    """What Graph says about a business phone number (GET /{phone-number-id})."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    messaging_limit_tier: str | None = None
    status: str | None = None
    platform_type: str | None = None
    throughput: dict[str, Any] | None = None


class PhoneNumberInput(ConnectionRef):
    pass


# ---- webhook events (parsed by webhooks.py, carried by signals) ---------------------------
class StatusEvent(_Model):
    message_id: str
    status: str
    timestamp: int
    recipient_id: str
    phone_number_id: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
    pricing: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None


class InboundMessage(_Model):
    message_id: str
    wa_id: str
    phone_number_id: str
    timestamp: int
    type: str
    text: str | None = None
    profile_name: str | None = None
    context_message_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class WebhookBatch(_Model):
    """Everything one webhook delivery carried, grouped by kind."""

    waba_id: str | None = None
    statuses: list[StatusEvent] = Field(default_factory=list)
    messages: list[InboundMessage] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
