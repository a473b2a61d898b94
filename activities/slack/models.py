"""Slack inputs and results as pydantic models (plain JSON; side-effect free for workflows).

Every model follows OpenSyte's contract (`core.contract`): snake_case names (results too), OpenSyte's
camelCase `SlackAction` names (`userId`, `threadTs`, `replyBroadcast`, `iconEmoji`, ...) accepted on input, so an
action row maps 1:1.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from core.contract import ContractModel, WorkflowInput, listify

CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
TS = re.compile(r"^[0-9]{1,12}\.[0-9]{1,8}$")


class _Model(ContractModel):
    pass


def check_channel(value: str | None, field: str = "channel") -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not CHANNEL_ID.match(value):
        raise ValueError(f"{field}: {value!r} is not a Slack conversation ID (C…, G… or D…); copy the ID from "
                         "the channel's details in Slack (channel names can be renamed and are not accepted)")
    return value


def check_user(value: str | None, field: str = "user_id") -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not USER_ID.match(value):
        raise ValueError(f"{field}: {value!r} is not a Slack user ID (U… or W…)")
    return value


def check_ts(value: str | None, field: str) -> str | None:
    if value is not None and not TS.match(value):
        raise ValueError(f"{field}: {value!r} is not a Slack message timestamp like '1503435956.000247'")
    return value


class ConnectionRef(_Model):
    """Which Slack connection (workspace install) of which organization to act through."""

    organization_id: str = Field(min_length=1, max_length=128)
    connection: str = Field(default="default", min_length=1, max_length=128)


class MessageContent(_Model):
    """Text and/or Block Kit content; `variables` fill `{NAME}` and `{{ name }}` placeholders."""

    text: str | None = Field(default=None, max_length=40_000)
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    variables: dict[str, Any] = Field(default_factory=dict)

    def has_content(self) -> bool:
        return bool(self.text or self.blocks or self.attachments)


# ---- activity inputs and results ---------------------------------------------------------
class PostMessageInput(ConnectionRef, MessageContent):
    """chat.postMessage to a channel, or to a user's DM with the app (`user_id`)."""

    channel: str | None = None
    user_id: str | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    username: str | None = Field(default=None, max_length=80)
    icon_emoji: str | None = None
    icon_url: str | None = Field(default=None, max_length=2000)
    mrkdwn: bool = True
    idempotency_key: str | None = Field(default=None, max_length=200)

    _channel = field_validator("channel")(lambda v: check_channel(v))
    _user = field_validator("user_id")(lambda v: check_user(v))
    _thread = field_validator("thread_ts")(lambda v: check_ts(v, "thread_ts"))

    @model_validator(mode="after")
    def _target_and_content(self) -> PostMessageInput:
        if (self.channel is None) == (self.user_id is None):
            raise ValueError("give exactly one of channel (a conversation ID) or user_id (a DM)")
        if not self.has_content():
            raise ValueError("message: give text, blocks or attachments (no_text)")
        if self.reply_broadcast and not self.thread_ts:
            raise ValueError("reply_broadcast: only a threaded reply (thread_ts) can be broadcast to the channel")
        if self.icon_emoji and self.icon_url:
            raise ValueError("give icon_emoji or icon_url, not both")
        if self.icon_emoji and not re.match(r"^:[a-z0-9_+'-]+:$", self.icon_emoji):
            raise ValueError(f"icon_emoji: {self.icon_emoji!r} must look like ':rocket:'")
        return self

    @property
    def target(self) -> str:
        return self.channel or self.user_id or ""


class MessageRef(_Model):
    """Where a message lives: its conversation and timestamp (Slack's message id)."""

    channel: str
    ts: str
    thread_ts: str | None = None
    team_id: str | None = None


class UpdateMessageInput(ConnectionRef, MessageContent):
    channel: str
    ts: str

    _channel = field_validator("channel")(lambda v: check_channel(v))
    _ts = field_validator("ts")(lambda v: check_ts(v, "ts"))

    @model_validator(mode="after")
    def _content(self) -> UpdateMessageInput:
        if not self.has_content():
            raise ValueError("an update needs text, blocks or attachments")
        return self


class EphemeralInput(ConnectionRef, MessageContent):
    """chat.postEphemeral: visible only to `user` in `channel`."""

    channel: str
    user: str
    thread_ts: str | None = None

    _channel = field_validator("channel")(lambda v: check_channel(v))
    _user = field_validator("user")(lambda v: check_user(v, "user"))

    @model_validator(mode="after")
    def _content(self) -> EphemeralInput:
        if not self.has_content():
            raise ValueError("an ephemeral message needs text or blocks")
        return self


class EphemeralResult(_Model):
    message_ts: str


class LookupUserInput(ConnectionRef):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class SlackUser(_Model):
    id: str
    team_id: str | None = None
    name: str | None = None
    real_name: str | None = None
    email: str | None = None
    is_bot: bool = False
    deleted: bool = False


class ConversationInput(ConnectionRef):
    channel: str

    _channel = field_validator("channel")(lambda v: check_channel(v))


class ChannelInfo(_Model):
    id: str
    name: str | None = None
    is_channel: bool = False
    is_group: bool = False
    is_im: bool = False
    is_private: bool = False
    is_archived: bool = False
    is_member: bool = False


class MembersInput(ConversationInput):
    max_members: int = Field(default=5000, ge=1, le=100_000)


class MembersResult(_Model):
    channel: str
    members: list[str]
    complete: bool = True


class OpenViewInput(ConnectionRef):
    trigger_id: str = Field(min_length=1)
    view: dict[str, Any]


class ViewRef(_Model):
    id: str
    hash: str | None = None


class AuthTestInput(ConnectionRef):
    pass


class AuthInfo(_Model):
    team_id: str
    team: str | None = None
    user_id: str | None = None
    bot_id: str | None = None
    url: str | None = None


class DirectMessageInput(ConnectionRef, MessageContent):
    """A DM to a person named by user ID or by e-mail (users.lookupByEmail first)."""

    user_id: str | None = None
    email: str | None = Field(default=None, max_length=254)

    _user = field_validator("user_id")(lambda v: check_user(v))

    @model_validator(mode="after")
    def _who(self) -> DirectMessageInput:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id or email")
        if not self.has_content():
            raise ValueError("a DM needs text, blocks or attachments")
        return self


class AdminNotifyInput(_Model):
    organization_id: str
    kind: str = Field(default="slack_fallback", max_length=64)
    message: str = Field(max_length=10_000)
    connection: str | None = None


class AdminNotified(_Model):
    notification_id: int


# ---- SendSlackMessage --------------------------------------------------------------------
class ChannelRoute(_Model):
    """Post to another channel (optionally through another Slack connection)."""

    kind: Literal["channel"] = "channel"
    channel: str
    connection: str | None = None

    _channel = field_validator("channel")(lambda v: check_channel(v))


class DirectMessageRoute(_Model):
    """DM a named person (user ID or e-mail) with the message."""

    kind: Literal["dm"] = "dm"
    user_id: str | None = None
    email: str | None = None
    connection: str | None = None

    _user = field_validator("user_id")(lambda v: check_user(v))

    @model_validator(mode="after")
    def _who(self) -> DirectMessageRoute:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("fallback dm: give exactly one of user_id or email")
        return self


_WhatsAppList = Annotated[list[str], Field(min_length=1, max_length=50)]
_WhatsAppRecipients = Annotated[_WhatsAppList, BeforeValidator(listify, json_schema_input_type=_WhatsAppList | str)]


class WhatsAppRoute(_Model):
    """Send the message's plain text through WhatsApp (child workflow SendWhatsAppMessage).

    Free-form text only reaches people inside WhatsApp's 24-hour customer-service window; give an
    approved `template` (SendWhatsAppMessage's template object) to reach anyone.
    """

    kind: Literal["whatsapp"] = "whatsapp"
    to: _WhatsAppRecipients = Field(description="E.164 numbers (one string is accepted)")
    connection: str = "default"
    template: dict[str, Any] | None = None


class AdminRoute(_Model):
    """Record the message as a notification for the organization's administrators."""

    kind: Literal["admin"] = "admin"


FallbackRoute = Annotated[ChannelRoute | DirectMessageRoute | WhatsAppRoute | AdminRoute,
                          Field(discriminator="kind")]


class SendSlackMessageInput(ConnectionRef, WorkflowInput):
    """Input of `SendSlackMessage`: OpenSyte's SlackAction plus fallback routes.

    `message` is the text (or the notification fallback text when `blocks` are given).
    """

    channel: str | None = None
    user_id: str | None = None
    message: str | None = Field(default=None, max_length=40_000)
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    username: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None
    as_user: bool = False
    variables: dict[str, Any] = Field(default_factory=dict)
    fallback: list[FallbackRoute] = Field(default_factory=list, max_length=10)
    idempotency_key: str | None = Field(default=None, max_length=200)
    deliver_within: int | None = Field(default=None, ge=60, le=86_400, description=(
        "seconds to keep retrying through a Slack outage before the fallback routes run; default 1 h"))
    # OpenSyte's own column, accepted so an action row can be passed as is (the connection name decides;
    # `integrationId` is ignored with the row's other bookkeeping columns, see core.contract).
    workspace_id: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> SendSlackMessageInput:
        if self.as_user:
            raise ValueError("asUser: this service posts as the app's bot user; posting as a person needs a "
                             "user token and is not supported")
        self.primary()  # validates the target and content now, before the workflow starts
        return self

    def primary(self) -> PostMessageInput:
        return PostMessageInput(
            organization_id=self.organization_id, connection=self.connection, channel=self.channel,
            user_id=self.user_id, text=self.message, blocks=self.blocks, attachments=self.attachments,
            thread_ts=self.thread_ts, reply_broadcast=self.reply_broadcast, username=self.username,
            icon_emoji=self.icon_emoji, icon_url=self.icon_url, variables=self.variables,
            idempotency_key=self.idempotency_key,
        )


class RouteAttempt(_Model):
    route: str
    ok: bool
    error: dict[str, Any] | None = None


class SendSlackMessageResult(_Model):
    """Which route delivered the message (`slack` is the primary target) and what failed before it.

    `delivered` is True only when people got the message (the primary target or a fallback channel, DM or
    WhatsApp number); a fallback route reports `outcome: partial`. When only the administrators were told (the
    `admin` route) or nothing worked, the workflow ends Failed and this result rides in the error's details.
    """

    delivered: bool
    outcome: Literal["succeeded", "partial", "failed"] = "succeeded"
    fallback: bool = Field(default=False, description="delivered by a fallback route, not the primary target")
    route: str | None = None
    channel: str | None = None
    ts: str | None = None
    whatsapp_message_ids: list[str] = Field(default_factory=list)
    notification_id: int | None = None
    attempts: list[RouteAttempt] = Field(default_factory=list)


# ---- interactivity -------------------------------------------------------------------------
class SlackInteraction(_Model):
    """One verified interaction routed to a workflow (signal `slack_interaction`)."""

    kind: Literal["block_actions", "view_submission", "message_action"]
    team_id: str
    user_id: str
    user_name: str | None = None
    action_id: str | None = None
    block_id: str | None = None
    value: str | None = None
    channel_id: str | None = None
    message_ts: str | None = None
    action_ts: str | None = None
    callback_id: str | None = None
    comment: str | None = Field(default=None, max_length=3000)
    decision: Literal["approve", "reject"] | None = None

    @property
    def key(self) -> str:
        """Slack may deliver the same interaction twice; this identifies it."""
        return ":".join([self.kind, self.user_id, self.action_ts or "", self.action_id or "",
                         self.callback_id or ""])


# ---- SlackApproval --------------------------------------------------------------------------
class SlackApprovalInput(ConnectionRef, WorkflowInput):
    """Ask for a decision in a channel; only `approvers` (or members of `approver_channel`) decide."""

    channel: str
    title: str = Field(min_length=1, max_length=150)
    text: str | None = Field(default=None, max_length=2900)
    fields: dict[str, str] = Field(default_factory=dict, max_length=10)
    approvers: list[str] = Field(default_factory=list, max_length=500)
    approver_channel: str | None = None
    allow_comment: bool = False
    requested_by: str | None = Field(default=None, max_length=200)
    timeout_seconds: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    reminder_seconds: float | None = Field(default=None, gt=0)
    max_reminders: int = Field(default=3, ge=0, le=50)
    approve_label: str = Field(default="Approve", min_length=1, max_length=75)
    reject_label: str = Field(default="Reject", min_length=1, max_length=75)

    _channel = field_validator("channel", "approver_channel")(lambda v: check_channel(v))

    @field_validator("approvers")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        return [check_user(u, "approvers") or u for u in v]

    @model_validator(mode="after")
    def _who_decides(self) -> SlackApprovalInput:
        if not self.approvers and not self.approver_channel:
            raise ValueError("give approvers (user IDs) and/or approver_channel (whose members may decide)")
        return self


class SlackApprovalResult(_Model):
    decision: Literal["approved", "rejected", "timed_out"]
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: str | None = None
    comment: str | None = None
    channel: str
    ts: str
    reminders_sent: int = 0
    refused: list[str] = Field(default_factory=list)


class ApprovalContext(_Model):
    """What the gateway asks an approval workflow (query) before opening a comment modal."""

    organization_id: str
    connection: str
    team_id: str | None
    channel: str
    open: bool
    allowed: bool
    allow_comment: bool


# ---- slash commands ------------------------------------------------------------------------
class SlackCommandInput(WorkflowInput):
    """A verified slash command (`/opensyte status`); the gateway answers through response_url."""

    team_id: str
    user_id: str
    channel_id: str | None = None
    command: str
    text: str = ""


class SlackStatusReport(_Model):
    text: str
    connections: list[dict[str, Any]] = Field(default_factory=list)
