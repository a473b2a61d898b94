"""WhatsApp inputs and results as pydantic models (plain JSON; side-effect free for workflows).

Every model follows OpenSyte's contract (`core.contract`): snake_case names, camelCase accepted on input.
Limits known before variables are filled in are model constraints (a refused input fails the workflow as
PermanentError `invalid_input`); Meta's content limits are checked again by `messages.py` on the message as
sent, after `{VAR}` substitution.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from core.contract import ContractModel, WorkflowInput, listify


class _Model(ContractModel):
    pass


class ConnectionRef(_Model):
    """Which connection of which organization to act through."""

    organization_id: str = Field(min_length=1, max_length=128)
    connection: str = Field(default="default", min_length=1, max_length=128)


# ---- message content ----------------------------------------------------------------------
MessageType = Literal[
    "text", "image", "video", "audio", "document", "sticker", "location", "contacts", "reaction",
    "interactive", "template",
]
MEDIA_TYPES: tuple[str, ...] = ("image", "video", "audio", "document", "sticker")
Category = Literal["marketing", "utility", "authentication", "service"]


class Media(_Model):
    """Exactly one of `id` (uploaded media) or `link` (http/https URL)."""

    link: str | None = None
    id: str | None = None
    caption: str | None = None
    filename: str | None = Field(default=None, description="documents only")


class Location(_Model):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class Contact(_Model):
    """A contact card (Meta's contact object); `name.formatted_name` is required."""

    name: dict[str, Any]
    phones: list[dict[str, Any]] = Field(default_factory=list)
    emails: list[dict[str, Any]] = Field(default_factory=list)
    addresses: list[dict[str, Any]] = Field(default_factory=list)
    urls: list[dict[str, Any]] = Field(default_factory=list)
    org: dict[str, Any] | None = None
    birthday: str | None = None


class Reaction(_Model):
    message_id: str
    emoji: str = Field(description="one emoji; an empty string removes the reaction")


class ReplyButton(_Model):
    id: str
    title: str


class ListRow(_Model):
    id: str
    title: str
    description: str | None = None


class ListSection(_Model):
    title: str | None = None
    rows: list[ListRow] = Field(default_factory=list)


class InteractiveHeader(_Model):
    type: Literal["text", "image", "video", "document"] = "text"
    text: str | None = None
    media: Media | None = None


class Interactive(_Model):
    """Reply buttons (`type: button`) or a list (`type: list`)."""

    type: Literal["button", "list"]
    body: str
    header: InteractiveHeader | None = None
    footer: str | None = None
    buttons: list[ReplyButton] = Field(default_factory=list)
    button: str | None = Field(default=None, description="the list's menu button label")
    sections: list[ListSection] = Field(default_factory=list)


class CurrencyValue(_Model):
    amount_1000: int
    code: str
    fallback_value: str


class DateTimeValue(_Model):
    fallback_value: str
    day_of_week: int | None = None
    year: int | None = None
    month: int | None = None
    day_of_month: int | None = None
    hour: int | None = None
    minute: int | None = None
    calendar: str | None = None


TemplateParamType = Literal["text", "currency", "date_time", "image", "video", "document", "location", "payload"]


class TemplateParam(_Model):
    """One template parameter; `parameter_name` for templates created with NAMED parameters."""

    type: TemplateParamType = "text"
    text: str | None = None
    parameter_name: str | None = None
    currency: CurrencyValue | None = None
    date_time: DateTimeValue | None = None
    image: Media | None = None
    video: Media | None = None
    document: Media | None = None
    location: Location | None = None
    payload: str | None = None


ParamValue = str | int | float | TemplateParam


class TemplateButtonParams(_Model):
    """Parameters of one template button: a URL suffix or a quick-reply payload."""

    index: int
    sub_type: Literal["quick_reply", "url", "copy_code"] = "quick_reply"
    parameters: list[ParamValue] = Field(default_factory=list)

    @field_validator("sub_type", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Template(_Model):
    """A template send: body parameters positional (a list) or named (an object)."""

    name: str
    language: str = "en_US"
    header: list[ParamValue] = Field(default_factory=list)
    body: list[ParamValue] | dict[str, ParamValue] = Field(default_factory=list)
    buttons: list[TemplateButtonParams] = Field(default_factory=list)


class OutboundMessage(_Model):
    """Any message type; only the part matching `type` is used."""

    type: MessageType = "text"
    text: str | None = None
    preview_url: bool = False
    media: Media | None = None
    location: Location | None = None
    contacts: list[Contact] = Field(default_factory=list)
    reaction: Reaction | None = None
    interactive: Interactive | None = None
    template: Template | None = None
    reply_to_message_id: str | None = None


# ---- activity inputs --------------------------------------------------------------------------
class _SendBase(ConnectionRef):
    to: str = Field(description="Recipient phone number in E.164, e.g. +16505551234")
    idempotency_key: str | None = None


class SendTextInput(_SendBase):
    text: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False
    reply_to_message_id: str | None = None


class SendMediaInput(_SendBase):
    media_type: Literal["image", "video", "audio", "document", "sticker"]
    link: str | None = None
    id: str | None = None
    caption: str | None = None
    filename: str | None = None
    reply_to_message_id: str | None = None


class SendLocationInput(_SendBase):
    location: Location
    reply_to_message_id: str | None = None


class SendContactsInput(_SendBase):
    contacts: list[Contact]
    reply_to_message_id: str | None = None


class SendReactionInput(_SendBase):
    message_id: str
    emoji: str


class SendInteractiveInput(_SendBase):
    interactive: Interactive
    reply_to_message_id: str | None = None


class SendTemplateInput(_SendBase):
    template: Template


class SendMessageInput(_SendBase):
    """The generic send: any message type to one recipient."""

    message: OutboundMessage
    conversation_id: str | None = None


class MarkReadInput(ConnectionRef):
    message_id: str
    typing_indicator: bool = False


MessageStatus = Literal["accepted", "held_for_quality_assessment", "paused", "failed", "skipped", "held"]


class SendResult(_Model):
    """One recipient's outcome: the provider message id and status, or the classified error."""

    to: str
    status: MessageStatus
    message_id: str | None = None
    wa_id: str | None = None
    error: dict[str, Any] | None = None
    category: str | None = None
    resume_at: str | None = Field(default=None, description="held: when the portfolio limit frees a slot (ISO)")


# ---- SendWhatsAppMessage ------------------------------------------------------------------
OpenSyteMessageType = Literal["TEXT", "TEMPLATE", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT", "LOCATION", "CONTACT"]


MAX_MESSAGE_RECIPIENTS = 1000  # SendWhatsAppMessage; BulkSendWhatsAppTemplate takes more
TEXT_MAX = 4096  # Meta's limits, also checked on the message as sent (messages.py)
CAPTION_MAX = 1024


_RecipientList = Annotated[list[str], Field(max_length=MAX_MESSAGE_RECIPIENTS)]
# A list of E.164 numbers (or variables); one number alone is accepted.
Recipients = Annotated[_RecipientList, BeforeValidator(listify, json_schema_input_type=_RecipientList | str)]


class SendWhatsAppMessageInput(ConnectionRef, WorkflowInput):
    """Input of `SendWhatsAppMessage`: every message type to one or many recipients.

    Accepts OpenSyte's `WhatsAppAction` columns (`to_numbers`/`toNumbers`, `message_type`, `text_message`,
    `template_name`, `template_language`, `template_params`, `media_url`, `media_type`, `caption`,
    `variables`) as well as this service's own fields (`to`, `text`, `type`, `media`, `template`, ...).
    `{VAR}` and `{{var}}` placeholders in text, caption, media URL, recipients and template parameters are
    resolved from `variables`.
    """

    to: Recipients = Field(default_factory=list, description="E.164 numbers (a single string is accepted)")
    text: str | None = Field(default=None, max_length=TEXT_MAX)
    preview_url: bool = False
    idempotency_key: str | None = Field(default=None, max_length=512)
    type: MessageType | None = None
    media: Media | None = None
    location: Location | None = None
    contacts: list[Contact] = Field(default_factory=list, max_length=5)
    reaction: Reaction | None = None
    interactive: Interactive | None = None
    template: Template | None = None
    reply_to_message_id: str | None = None
    hold_when_limited: bool = Field(
        default=True, description="wait (durably) when the portfolio's 24 h messaging limit is reached")
    deliver_within: int | None = Field(default=None, ge=60, le=7 * 86_400, description=(
        "seconds to keep retrying through provider outages before a recipient fails; default 6 h"))
    # OpenSyte WhatsAppAction columns
    to_numbers: Recipients | None = Field(default=None,
                                          description="OpenSyte's toNumbers (a single string is accepted)")
    message_type: OpenSyteMessageType | None = None
    text_message: str | None = Field(default=None, max_length=TEXT_MAX)
    template_name: str | None = Field(default=None, min_length=1, max_length=512)
    template_language: str | None = None
    template_params: Any = Field(default=None, description="a list (positional body parameters), an object "
                                 "(named), {header, body, buttons}, or a location / contact card(s)")
    media_url: str | None = None
    media_type: Literal["image", "video", "audio", "document", "sticker",
                        "IMAGE", "VIDEO", "AUDIO", "DOCUMENT", "STICKER"] | None = None
    caption: str | None = Field(default=None, max_length=CAPTION_MAX)
    variables: dict[str, Any] | None = None
    business_account_id: str | None = Field(default=None, description="accepted; the connection decides")


class SendProgress(_Model):
    """SendWhatsAppMessage's `progress` query: recipients done so far."""

    total: int = 0
    sent: int = 0
    failed: int = 0
    held: int = Field(default=0, description="held for good (hold_when_limited off)")
    waiting: int = Field(default=0, description="held until a messaging-limit slot frees, then sent")
    state: Literal["running", "completed"] = "running"


class SendWhatsAppMessageResult(_Model):
    results: list[SendResult]
    sent: int = 0
    failed: int = 0
    held: int = 0

    @property
    def message_id(self) -> str | None:
        return self.results[0].message_id if self.results else None


# ---- phone numbers and templates -----------------------------------------------------------
class PhoneNumberStatus(_Model):
    """What Graph says about a business phone number (GET /{phone-number-id})."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    messaging_limit_tier: str | None = None
    whatsapp_business_manager_messaging_limit: str | None = None
    status: str | None = None
    platform_type: str | None = None
    throughput: dict[str, Any] | None = None


class PhoneNumberInput(ConnectionRef):
    pass


class RequestCodeInput(ConnectionRef):
    code_method: Literal["SMS", "VOICE"] = "SMS"
    language: str = "en_US"


class VerifyCodeInput(ConnectionRef):
    code: str


class PhoneActionResult(_Model):
    success: bool
    action: str


class TemplatesInput(ConnectionRef):
    refresh: bool = False


class TemplateInfo(_Model):
    name: str
    language: str
    status: str
    category: str | None = None
    id: str | None = None
    parameter_format: str | None = None
    components: list[dict[str, Any]] = Field(default_factory=list)


class TemplatesResult(_Model):
    templates: list[TemplateInfo]


# ---- bulk sends -------------------------------------------------------------------------------
class BulkRecipient(_Model):
    """One recipient of a bulk template send with its own parameters."""

    to: str
    body: list[ParamValue] | dict[str, ParamValue] = Field(default_factory=list)
    header: list[ParamValue] = Field(default_factory=list)
    buttons: list[TemplateButtonParams] = Field(default_factory=list)


MAX_RECIPIENTS = 10_000  # keeps the input well under Temporal's payload limit; split larger audiences
MAX_BATCH = 1000
MAX_CONCURRENCY = 500
MAX_PARALLEL_BATCHES = 8
LANGUAGE_PATTERN = r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$"


class BulkSendWhatsAppTemplateInput(ConnectionRef, WorkflowInput):
    template_name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en_US", pattern=LANGUAGE_PATTERN, description="a language code like en_US")
    recipients: list[BulkRecipient] = Field(min_length=1, max_length=MAX_RECIPIENTS,
                                            description="split larger audiences into several sends")
    batch_size: int = Field(default=100, ge=1, le=MAX_BATCH)
    concurrency: int = Field(default=10, ge=1, le=MAX_CONCURRENCY,
                             description="sends in flight per batch; about throughput x latency is enough")
    max_parallel_batches: int = Field(default=2, ge=1, le=MAX_PARALLEL_BATCHES)
    idempotency_key: str | None = Field(default=None, max_length=200, description="defaults to the workflow id")
    deliver_within: int | None = Field(default=None, ge=60, le=7 * 86_400, description=(
        "seconds: recipients not accepted by then (a provider outage) fail with their last cause; default 12 h"))


class BulkBatchInput(ConnectionRef):
    template_name: str
    language: str
    recipients: list[BulkRecipient]
    indices: list[int] = Field(description="each recipient's index in the whole send (idempotency keys)")
    concurrency: int = 10
    idempotency_key: str
    deadline: str | None = Field(default=None, description="ISO time: a recipient still pending then fails")
    settle_only: bool = Field(default=False, description="send nothing: report what the intents know (the "
                              "deadline passed)")


class BulkOutcome(_Model):
    index: int
    status: Literal["sent", "failed", "skipped", "held", "pending"]
    message_id: str | None = None
    message_status: str | None = Field(default=None, description="Meta's send status when not `accepted` "
                                       "(held_for_quality_assessment, paused)")
    code: str | None = None
    resume_at: str | None = None
    resent: int = Field(default=0, description="how many times this recipient was sent again after an attempt "
                        "whose answer was lost (a kill between two attempts can make it more than one)")


class BulkBatchResult(_Model):
    outcomes: list[BulkOutcome]
    retry_after: float | None = Field(default=None, description="pending recipients: seconds before trying again")
    error: dict[str, Any] | None = Field(default=None, description="the temporary failure that paused the batch")


class BulkProgress(_Model):
    total: int
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    held: int = 0
    cancelled: int = 0
    pending: int = Field(default=0, description="waiting to be retried after a temporary failure")
    resent: int = Field(default=0, description="attempts made while an earlier attempt's outcome was unknown "
                        "(its answer lost): an upper bound on duplicates, 0 when status webhooks reconcile them")
    failed_by_error: dict[str, int] = Field(default_factory=dict)
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    sent_by_provider_status: dict[str, int] = Field(
        default_factory=dict, description="sent messages Meta did not simply accept: held_for_quality_assessment "
        "(Meta may still deliver or drop them) or paused")
    state: Literal["running", "pausing", "paused", "held", "retrying", "cancelling", "completed", "cancelled",
                   "failed"] = "running"
    error: dict[str, Any] | None = None


class BulkSendWhatsAppTemplateResult(BulkProgress):
    failures: list[BulkOutcome] = Field(default_factory=list, description="first 200 failures")


# ---- inbound content (every message type Meta documents, normalized) ------------------------
class InboundMedia(_Model):
    """A customer's image, video, audio, document or sticker; fetch the bytes with `whatsapp.download_media`."""

    id: str = Field(description="Meta's media id (valid for a limited time, about 30 days)")
    mime_type: str | None = None
    sha256: str | None = Field(default=None, description="as Meta sends it (base64 in webhooks)")
    caption: str | None = None
    filename: str | None = Field(default=None, description="documents")
    voice: bool | None = Field(default=None, description="audio: recorded as a voice message")
    animated: bool | None = Field(default=None, description="stickers")
    url: str | None = Field(default=None, description="Meta's short-lived download URL when the webhook has one "
                            "(it needs the connection's token: use whatsapp.download_media)")


class InboundLocation(_Model):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class InboundContactCard(_Model):
    """A shared contact card (Meta's contact object; every part is optional in what customers send)."""

    name: dict[str, Any] = Field(default_factory=dict)
    phones: list[dict[str, Any]] = Field(default_factory=list)
    emails: list[dict[str, Any]] = Field(default_factory=list)
    addresses: list[dict[str, Any]] = Field(default_factory=list)
    urls: list[dict[str, Any]] = Field(default_factory=list)
    org: dict[str, Any] | None = None
    birthday: str | None = None
    vcard: str | None = None


class InboundReply(_Model):
    """The reply button or list row the customer tapped (`button_reply`, `list_reply`), or a flow's answer
    (`nfm_reply`: `response_json` as Meta sends it)."""

    type: str
    id: str | None = None
    title: str | None = None
    description: str | None = None
    name: str | None = None
    body: str | None = None
    response_json: str | None = None


class InboundButton(_Model):
    """A template's quick-reply button: its `payload` is what the template send set for that button."""

    payload: str | None = None
    text: str | None = None


class InboundReaction(_Model):
    """An emoji on one of our messages; no emoji means the customer removed their reaction."""

    message_id: str | None = None
    emoji: str | None = None


class Referral(_Model):
    """The Click-to-WhatsApp ad or post the customer came from."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None
    welcome_message: dict[str, Any] | None = None


class OrderItem(_Model):
    product_retailer_id: str
    quantity: int = 1
    item_price: float | None = None
    currency: str | None = None


class InboundOrder(_Model):
    """A cart sent from the catalog."""

    catalog_id: str | None = None
    text: str | None = None
    product_items: list[OrderItem] = Field(default_factory=list)


class InboundSystem(_Model):
    """A system message: the customer changed number (`user_changed_number`) or BSUID (`user_changed_user_id`)."""

    type: str | None = None
    body: str | None = None
    wa_id: str | None = Field(default=None, description="the new phone number, when it may be shared")
    user_id: str | None = None
    parent_user_id: str | None = None
    customer: str | None = None
    identity: str | None = None


class MessageContext(_Model):
    """What the message refers to: a message it replies to, a product it asks about, or that it was forwarded."""

    message_id: str | None = None
    sender: str | None = Field(default=None, description="context.from: our display number when replying to us")
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


class InboundContent(_Model):
    """A customer's message, normalized: only the part matching `type` is set.

    `choice` is the id a workflow branches on: the tapped reply button's or list row's id, or the template
    quick-reply button's payload. `text` is a plain summary (body, caption, title…). Types Meta may add later
    (and `unsupported`) keep their object in `raw` with their `type`.
    """

    type: str
    text: str | None = None
    choice: str | None = None
    media: InboundMedia | None = None
    location: InboundLocation | None = None
    contacts: list[InboundContactCard] = Field(default_factory=list)
    reply: InboundReply | None = None
    button: InboundButton | None = None
    reaction: InboundReaction | None = None
    order: InboundOrder | None = None
    system: InboundSystem | None = None
    referral: Referral | None = None
    context: MessageContext | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
    raw: dict[str, Any] | None = None


# ---- webhook events (parsed by webhooks.py, carried by signals) ---------------------------
class StatusEvent(_Model):
    """One outbound message status. `recipient_id` is the customer as addressed: the wa_id, or the BSUID
    (`recipient_user_id`) for a send to a user without a shared phone number."""

    message_id: str
    status: str
    timestamp: int
    recipient_id: str
    phone_number_id: str
    recipient_user_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
    pricing: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None
    # What we attached to the send (`osi:<intent id>`): names the send intent even when its answer was lost.
    biz_opaque_callback_data: str | None = None


class InboundMessage(_Model):
    """A customer's message as delivered. `customer` is the conversation key: the wa_id (phone number) when Meta
    shares it, else the business-scoped user id (BSUID, `user_id`); never empty."""

    message_id: str
    customer: str = Field(min_length=1)
    phone_number_id: str
    timestamp: int
    type: str
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    text: str | None = None
    profile_name: str | None = None
    context_message_id: str | None = None
    content: InboundContent | None = None


class WebhookBatch(_Model):
    """Everything one webhook delivery carried, grouped by kind."""

    waba_id: str | None = None
    statuses: list[StatusEvent] = Field(default_factory=list)
    messages: list[InboundMessage] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)


# ---- conversations ----------------------------------------------------------------------------
class SentOrigin(_Model):
    """What the store knows of an outbound message a status is about (sent by any workflow)."""

    type: str | None = None
    template: str | None = None
    category: str | None = None


class ConversationEvent(_Model):
    """One webhook event for a conversation (signal payload); `opt_out` set by the gateway's keyword rule.

    Only inbound messages are signalled: the store owns outbound timelines (`status` and `origin` are kept so
    that histories recorded before still decode; the conversation ignores them).
    """

    inbound: InboundMessage | None = None
    status: StatusEvent | None = None
    origin: SentOrigin | None = None
    opt_out: bool = False


class ConversationEvents(_Model):
    events: list[ConversationEvent]


class StatusStep(_Model):
    status: str
    at: int
    error: dict[str, Any] | None = None


class ConversationMessage(_Model):
    """A message in or out of the conversation.

    Inbound messages carry their full `content`. Outbound delivery (`status`, `timeline`, `error`, `cost`) is
    owned by the store: the `view` query leaves it empty for outbound messages, the `view_with_status` update
    fills it in (and adds messages sent to this customer by other workflows, such as bulk sends).
    """

    message_id: str
    direction: Literal["in", "out"]
    type: str = "text"
    text: str | None = None
    at: int = 0
    content: InboundContent | None = None
    status: str | None = None
    timeline: list[StatusStep] = Field(default_factory=list)
    category: str | None = None
    template: str | None = None
    error: dict[str, Any] | None = None
    cost: float | None = None
    currency: str | None = None
    seq: int = 0


class ConversationState(_Model):
    """What a conversation carries across continue-as-new."""

    messages: list[ConversationMessage] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    last_inbound_at: int | None = None
    profile_name: str | None = None
    opted_in: bool = False
    opted_out: bool = False
    context: dict[str, Any] = Field(default_factory=dict)
    seq: int = 0
    loaded: bool = False


class ConversationInput(ConnectionRef, WorkflowInput):
    """One customer of one business number. `wa_id` is the customer's phone number as Meta writes it (digits);
    a customer who shares no phone number is keyed by the business-scoped user id (`user_id`, BSUID)."""

    phone_number_id: str
    wa_id: str | None = None
    user_id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict, description="OpenSyte context, e.g. contact id")
    fallback_template: Template | None = Field(
        default=None, description="sent instead of a free-form reply when the 24 h window is closed")
    idle_timeout_seconds: float = 72 * 3600.0
    history_limit: int = Field(default=2000, description="continue-as-new after this many history events")
    keep_messages: int = 200
    state: ConversationState | None = None

    @model_validator(mode="after")
    def _one_customer_key(self) -> ConversationInput:
        if not (self.wa_id or "").strip() and not (self.user_id or "").strip():
            raise ValueError("wa_id or user_id: a conversation needs the customer's phone number or BSUID")
        return self

    @property
    def customer(self) -> str:
        """The conversation's key: the phone number when known, else the BSUID."""
        return (self.wa_id or "").strip() or (self.user_id or "").strip()


class ConversationReply(_Model):
    """Update input: a reply through the conversation (free-form inside the window)."""

    message: OutboundMessage
    idempotency_key: str | None = None


class ConversationReplyResult(_Model):
    message_id: str | None
    status: str
    used_fallback_template: bool = False
    category: str | None = None


class WaitForReply(_Model):
    after_seq: int | None = Field(default=None, description="reply newer than this sequence; default: now")
    timeout_seconds: float = 300.0


class WaitForReplyResult(_Model):
    reply: ConversationMessage | None = None
    timed_out: bool = False


class ReplySubscription(_Model):
    """Signal input: another workflow asks to be signalled with the customer's next reply."""

    workflow_id: str
    signal_name: str = "whatsapp_reply"
    after_seq: int | None = None


class ViewRequest(_Model):
    """Update input of `view_with_status`: how many of the store's latest messages to merge in."""

    limit: int = Field(default=200, ge=1, le=1000)


class ConversationView(_Model):
    organization_id: str
    connection: str
    phone_number_id: str
    wa_id: str | None
    user_id: str | None = None
    profile_name: str | None
    window_open: bool
    window_closes_at: int | None
    opted_in: bool
    opted_out: bool
    context: dict[str, Any]
    messages: list[ConversationMessage]
    seq: int
    subscriptions: int = 0


class ConversationResult(_Model):
    reason: Literal["idle"]
    messages: int


class ContactSnapshot(_Model):
    """What the store knows of a customer (opt-in, window) when a conversation starts."""

    opted_in: bool = False
    opted_out: bool = False
    last_inbound_at: int | None = None
    profile_name: str | None = None


class ContactLookupInput(ConnectionRef):
    phone_number_id: str
    wa_id: str = Field(description="the customer key: wa_id, or the BSUID of a customer without one")


class MessageTimelinesInput(ConnectionRef):
    """The store's delivery record of a customer's latest messages (or of the given ids)."""

    phone_number_id: str
    customer: str = Field(min_length=1, description="wa_id or BSUID, as the conversation is keyed")
    message_ids: list[str] = Field(default_factory=list)
    limit: int = Field(default=200, ge=1, le=1000)


class MessageTimeline(_Model):
    """One message as the store (the owner of delivery facts) knows it."""

    message_id: str
    direction: Literal["in", "out"]
    type: str | None = None
    template: str | None = None
    category: str | None = None
    status: str
    timeline: list[StatusStep] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    pricing_category: str | None = None
    billable: bool | None = None
    cost: float | None = None
    currency: str | None = None
    at: int = 0


class MessageTimelines(_Model):
    messages: list[MessageTimeline]


def conversation_workflow_id(key: bytes, organization_id: str, phone_number_id: str, customer: str) -> str:
    """One conversation per (organization, business number, customer), without the customer's number in it.

    Workflow ids are visible in Temporal's UI, CLI and visibility store, unencrypted: the customer part is a
    keyed hash (HMAC-SHA256 with the service's conversation-id key, see `conversation_ids.key`), deterministic
    so that signal-with-start from every gateway finds the same conversation.
    """
    if not customer:
        raise ValueError("a conversation needs a customer key (wa_id or BSUID)")
    mac = hmac.new(key, "\x1f".join((organization_id, phone_number_id, customer)).encode(), hashlib.sha256)
    digest = base64.b32encode(mac.digest()[:20]).decode().lower()
    return f"whatsapp-conversation:{organization_id}:{phone_number_id}:{digest}"


# ---- media -----------------------------------------------------------------------------------
class UploadMediaInput(ConnectionRef):
    """Fetch a file from `source_url` (e.g. OpenSyte's file storage) and upload it to Meta (kept 30 days)."""

    source_url: str = Field(min_length=1, max_length=4096)
    mime_type: str | None = None  # default: the source's Content-Type
    filename: str | None = Field(default=None, max_length=240)


class UploadMediaResult(_Model):
    media_id: str
    kind: str  # image | video | audio | document | sticker: the message type that can carry it
    mime_type: str
    size: int
    sha256: str


class MediaRefInput(ConnectionRef):
    media_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]+$")


class MediaInfo(_Model):
    """What Meta says of uploaded or received media; `url` is short-lived and needs the token."""

    media_id: str
    url: str
    mime_type: str
    sha256: str
    file_size: int


class DownloadMediaInput(MediaRefInput):
    """Fetch media a customer sent (Meta's URL lookup, then the download with the connection's token).

    With `upload_url` the file is PUT there (e.g. a presigned URL of OpenSyte's storage) and only its
    description returns; without it the bytes come back base64-encoded, up to `max_inline_bytes` (workflow
    results must stay small).
    """

    upload_url: str | None = Field(default=None, max_length=4096)
    max_inline_bytes: int = Field(default=1024 * 1024, ge=0, le=1536 * 1024)


class DownloadMediaResult(_Model):
    media_id: str
    mime_type: str
    size: int
    sha256: str = Field(description="hex SHA-256 of the bytes, checked against Meta's")
    content_base64: str | None = None
    uploaded_to: str | None = None
