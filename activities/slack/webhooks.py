"""Slack request signing (v0 HMAC on raw bytes, 5-minute window) and inbound payload parsing.

Verification is slack_sdk's SignatureVerifier with an injectable clock; we only add what it leaves
to the caller: garbage timestamps and missing headers are a clean False (401), never an exception.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from activities.slack.models import SlackInteraction

TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_HEADER = "x-slack-signature"
RETRY_NUM_HEADER = "x-slack-retry-num"
RETRY_REASON_HEADER = "x-slack-retry-reason"
REPLAY_WINDOW_SECONDS = 300  # slack_sdk's window; a test pins it

# How our interactive messages name the workflow that posted them.
ACTION_PREFIX = "osi."  # action_id of our buttons: osi.approve, osi.reject, osi.<anything>
BLOCK_PREFIX = "osi:"  # block_id of our blocks: osi:<workflow id>
APPROVE_ACTION = "osi.approve"
REJECT_ACTION = "osi.reject"
COMMENT_CALLBACK = "osi.comment"  # callback_id of the comment modal
COMMENT_BLOCK = "osi_comment"
COMMENT_ACTION = "comment"
COMMENT_MAX = 3000  # the modal's input limit, and what a signal carries


class MalformedRequest(ValueError):
    """A verified request whose body is not a payload Slack sends."""


class _FixedClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def sign(signing_secret: str, timestamp: str | int, body: bytes) -> str:
    """The `X-Slack-Signature` Slack would send (used by the sandbox and tests)."""
    sig = SignatureVerifier(signing_secret).generate_signature(timestamp=str(timestamp), body=body)
    assert sig is not None
    return sig


def verify_signature(
    signing_secret: str, body: bytes, timestamp: str | None, signature: str | None,
    *, now: Callable[[], float] = time.time,
) -> bool:
    """True only for a fresh (±5 min), correctly signed request; compares in constant time."""
    if not signing_secret or not timestamp or not signature or not signature.startswith("v0="):
        return False
    try:
        ts = int(timestamp.strip())
    except ValueError:
        return False
    if ts <= 0:
        return False
    try:
        return SignatureVerifier(signing_secret, clock=_FixedClock(now)).is_valid(body, str(ts), signature.strip())
    except (UnicodeDecodeError, ValueError):
        return False


def verify_request(signing_secret: str, body: bytes, headers: Mapping[str, str],
                   *, now: Callable[[], float] = time.time) -> bool:
    lower = {k.lower(): v for k, v in headers.items()}
    return verify_signature(signing_secret, body, lower.get(TIMESTAMP_HEADER), lower.get(SIGNATURE_HEADER), now=now)


# ---- parsing --------------------------------------------------------------------------------
@dataclass
class SlackRequest:
    """One verified inbound request, by kind: url_verification, event_callback, block_actions,
    view_submission, message_action, shortcut, command, or another interaction type."""

    kind: str
    team_id: str | None
    user_id: str | None
    payload: dict[str, Any]
    dedupe_key: str
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def challenge(self) -> str | None:
        return self.payload.get("challenge") if self.kind == "url_verification" else None


def _o(value: Any) -> dict[str, Any]:
    """An object where Slack sends one; any other shape counts as absent (a signed body is still Slack's)."""
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def parse(body: bytes) -> SlackRequest:
    """Events API JSON, an interactivity `payload=` form, or a slash-command form."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MalformedRequest(f"body is not JSON: {str(exc)[:200]}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise MalformedRequest("Events API body without a type")
        kind = doc["type"]
        event = _o(doc.get("event"))
        return SlackRequest(kind=kind, team_id=_s(doc.get("team_id")), user_id=_s(event.get("user")), payload=doc,
                            dedupe_key=f"event:{_s(doc.get('event_id')) or _body_hash(body)}", event=event)
    form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    if "payload" in form:
        try:
            doc = json.loads(form["payload"])
        except (ValueError, RecursionError) as exc:
            raise MalformedRequest(f"payload is not JSON: {str(exc)[:200]}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise MalformedRequest("interaction payload without a type")
        team, user, view = _o(doc.get("team")), _o(doc.get("user")), _o(doc.get("view"))
        key = _s(doc.get("trigger_id")) or (f"{view.get('id')}:{view.get('hash')}" if view else _body_hash(body))
        return SlackRequest(kind=doc["type"], team_id=_s(team.get("id")) or _s(user.get("team_id")),
                            user_id=_s(user.get("id")), payload=doc, dedupe_key=f"{doc['type']}:{key}")
    if "command" in form:
        return SlackRequest(kind="command", team_id=form.get("team_id"), user_id=form.get("user_id"),
                            payload=form, dedupe_key=f"command:{form.get('trigger_id') or _body_hash(body)}")
    raise MalformedRequest("neither an Events API body, an interaction payload nor a slash command")


# ---- routing to workflows -------------------------------------------------------------------
def workflow_of_block(block_id: str | None) -> str | None:
    if block_id and block_id.startswith(BLOCK_PREFIX) and len(block_id) > len(BLOCK_PREFIX):
        return block_id[len(BLOCK_PREFIX):]
    return None


def _decision(action_id: str | None) -> str | None:
    return {APPROVE_ACTION: "approve", REJECT_ACTION: "reject"}.get(action_id or "")


def interactions(req: SlackRequest) -> list[tuple[str, SlackInteraction]]:
    """(workflow id, interaction) for each of our actions in a verified request; others are ignored."""
    p = req.payload
    user = _o(p.get("user"))
    base: dict[str, Any] = {"team_id": req.team_id or "", "user_id": _s(user.get("id")) or "",
                            "user_name": _s(user.get("username")) or _s(user.get("name"))}
    out: list[tuple[str, SlackInteraction]] = []
    if req.kind == "block_actions":
        container = _o(p.get("container"))
        channel = _s(_o(p.get("channel")).get("id")) or _s(container.get("channel_id"))
        message_ts = _s(container.get("message_ts")) or _s(_o(p.get("message")).get("ts"))
        for action in _l(p.get("actions")):
            action = _o(action)
            action_id, block_id, value = _s(action.get("action_id")), _s(action.get("block_id")), \
                _s(action.get("value"))
            wf = value if (action_id or "").startswith(ACTION_PREFIX) and value else None
            wf = wf or workflow_of_block(block_id)
            if not wf:
                continue
            out.append((wf, SlackInteraction(
                kind="block_actions", action_id=action_id, block_id=block_id, value=value, channel_id=channel,
                message_ts=message_ts, action_ts=_s(action.get("action_ts")), decision=_decision(action_id),
                **base)))
    elif req.kind == "view_submission":
        view = _o(p.get("view"))
        if view.get("callback_id") != COMMENT_CALLBACK:
            return []
        try:
            meta = _o(json.loads(_s(view.get("private_metadata")) or "{}"))
        except (ValueError, RecursionError):
            return []
        values = _o(_o(view.get("state")).get("values"))
        comment = _o(_o(values.get(COMMENT_BLOCK)).get(COMMENT_ACTION)).get("value")
        comment = str(comment)[:COMMENT_MAX] if comment else None
        decision = meta.get("decision") if meta.get("decision") in ("approve", "reject") else None
        if _s(meta.get("wf")):
            out.append((str(meta["wf"]), SlackInteraction(
                kind="view_submission", callback_id=COMMENT_CALLBACK, channel_id=_s(meta.get("channel")),
                message_ts=_s(meta.get("ts")), action_ts=str(view.get("id")), comment=comment,
                decision=decision, action_id={"approve": APPROVE_ACTION, "reject": REJECT_ACTION}.get(decision or ""),
                **base)))
    elif req.kind == "message_action":
        message = _o(p.get("message"))
        wf = next((w for b in _l(message.get("blocks")) if (w := workflow_of_block(_s(_o(b).get("block_id"))))),
                  None)
        if wf:
            out.append((wf, SlackInteraction(
                kind="message_action", callback_id=_s(p.get("callback_id")),
                channel_id=_s(_o(p.get("channel")).get("id")), message_ts=_s(message.get("ts")),
                action_ts=_s(p.get("action_ts")), **base)))
    return out
