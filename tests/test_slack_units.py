"""Slack pure units: request signing (Slack's published vector), classifier, Block Kit, models, parsing."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from activities.slack import webhooks
from activities.slack.blocks import (
    InvalidBlocks,
    plain_text,
    render,
    render_text,
    validate_attachments,
    validate_blocks,
    validate_view,
)
from activities.slack.errors import classify
from activities.slack.models import PostMessageInput, SendSlackMessageInput, SlackApprovalInput
from core.errors import ErrorClass, PermanentError

# Slack's documented example (python-slack-sdk tests/slack_sdk/signature/test_signature_verifier.py).
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TS = "1531420618"
BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def at(offset: float):
    return lambda: int(TS) + offset


# ---- signing ------------------------------------------------------------------------------------
def test_published_test_vector() -> None:
    assert webhooks.sign(SECRET, TS, BODY) == SIG
    assert webhooks.verify_signature(SECRET, BODY, TS, SIG, now=at(0))
    assert webhooks.verify_request(SECRET, BODY, {"X-Slack-Request-Timestamp": TS, "X-Slack-Signature": SIG},
                                   now=at(12))


@pytest.mark.parametrize("offset", [301, -301, 3600, -86_400])
def test_replay_window_is_five_minutes_both_ways(offset: float) -> None:
    assert webhooks.REPLAY_WINDOW_SECONDS == 300
    assert webhooks.verify_signature(SECRET, BODY, TS, SIG, now=at(299 if offset > 0 else -299))
    assert not webhooks.verify_signature(SECRET, BODY, TS, SIG, now=at(offset))


@pytest.mark.parametrize("case", ["body", "secret", "signature", "garbage_ts", "empty_ts", "no_sig", "v1",
                                  "float_ts", "negative_ts", "non_ascii_body", "no_secret"])
def test_forged_or_malformed_requests_are_refused_without_exceptions(case: str) -> None:
    body, secret, ts, sig = BODY, SECRET, TS, SIG
    if case == "body":
        body = BODY.replace(b"roadrunner", b"coyote")
    elif case == "secret":
        secret = SECRET[::-1]
    elif case == "signature":
        sig = SIG[:-1] + ("0" if SIG[-1] != "0" else "1")
    elif case == "garbage_ts":
        ts = "yesterday"
    elif case == "empty_ts":
        ts = ""
    elif case == "no_sig":
        sig = ""
    elif case == "v1":
        sig = "v1=" + SIG[3:]
    elif case == "float_ts":
        ts = TS + ".5"
    elif case == "negative_ts":
        ts = "-" + TS
    elif case == "non_ascii_body":
        body = b"\xff\xfe" + BODY
    elif case == "no_secret":
        secret = ""
    assert webhooks.verify_signature(secret, body, ts, sig, now=at(0)) is False


def test_the_vector_body_parses_as_a_slash_command() -> None:
    req = webhooks.parse(BODY)
    assert (req.kind, req.team_id, req.user_id) == ("command", "T1DC2JH3J", "U2CERLKJA")
    assert req.payload["command"] == "/webhook-collect" and req.payload["text"] == ""
    assert req.dedupe_key == "command:398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"


# ---- parsing and routing ---------------------------------------------------------------------
def block_actions(actions: list[dict], **extra) -> bytes:
    doc = {"type": "block_actions", "user": {"id": "W111", "username": "primary-owner", "team_id": "T111"},
           "api_app_id": "A111", "token": "verification_token",
           "container": {"type": "message", "message_ts": "111.222", "channel_id": "C111", "is_ephemeral": True},
           "trigger_id": "111.222.valid", "team": {"id": "T111", "domain": "workspace-domain"},
           "channel": {"id": "C111", "name": "test-channel"},
           "response_url": "https://hooks.slack.com/actions/T111/111/random-value", "actions": actions, **extra}
    return f"payload={quote(json.dumps(doc))}".encode()


def test_block_actions_route_to_the_workflow_in_the_value_or_block_id() -> None:
    raw = block_actions([
        {"action_id": "osi.approve", "block_id": "osi:wf-1", "value": "wf-1", "type": "button",
         "action_ts": "1596530385.194939"},
        {"action_id": "a", "block_id": "b", "value": "click_me_123", "type": "button", "action_ts": "1.2"},
        {"action_id": "custom", "block_id": "osi:wf-2", "value": "x", "type": "button", "action_ts": "1.3"},
    ])
    req = webhooks.parse(raw)
    assert req.kind == "block_actions" and req.team_id == "T111" and req.dedupe_key == "block_actions:111.222.valid"
    routed = webhooks.interactions(req)
    assert [wf for wf, _ in routed] == ["wf-1", "wf-2"]  # the plain "a" action is not ours
    first = routed[0][1]
    assert (first.decision, first.user_id, first.channel_id, first.message_ts) == ("approve", "W111", "C111",
                                                                                    "111.222")
    assert routed[1][1].decision is None


def test_view_submission_and_events_parse() -> None:
    doc = {"type": "view_submission", "team": {"id": "T1"}, "user": {"id": "U1", "username": "ann"},
           "trigger_id": "t.1", "view": {"id": "V1", "hash": "h", "callback_id": webhooks.COMMENT_CALLBACK,
                                         "private_metadata": json.dumps({"wf": "wf-9", "decision": "reject",
                                                                         "channel": "C1", "ts": "1.2"}),
                                         "state": {"values": {webhooks.COMMENT_BLOCK: {webhooks.COMMENT_ACTION: {
                                             "type": "plain_text_input", "value": "too expensive"}}}}}}
    req = webhooks.parse(f"payload={quote(json.dumps(doc))}".encode())
    ((wf, ev),) = webhooks.interactions(req)
    assert (wf, ev.decision, ev.comment, ev.action_id) == ("wf-9", "reject", "too expensive", "osi.reject")
    values = doc["view"]["state"]["values"][webhooks.COMMENT_BLOCK][webhooks.COMMENT_ACTION]
    values["value"] = "x" * 5000  # longer than a signal may carry: cut, never a crash in the gateway
    ((_, long_ev),) = webhooks.interactions(webhooks.parse(f"payload={quote(json.dumps(doc))}".encode()))
    assert long_ev.comment == "x" * webhooks.COMMENT_MAX
    ev_req = webhooks.parse(json.dumps({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
                                        "event": {"type": "app_uninstalled"}}).encode())
    assert (ev_req.kind, ev_req.dedupe_key, ev_req.event["type"]) == ("event_callback", "event:Ev1",
                                                                      "app_uninstalled")
    uv = webhooks.parse(b'{"token":"x","challenge":"abc","type":"url_verification"}')
    assert uv.challenge == "abc"
    for bad in (b"{not json", b"payload=%7Bbad", b"hello=world", b'{"no":"type"}'):
        with pytest.raises(webhooks.MalformedRequest):
            webhooks.parse(bad)


# ---- classifier -------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "cls"), [
    ("channel_not_found", ErrorClass.PERMANENT), ("is_archived", ErrorClass.PERMANENT),
    ("msg_too_long", ErrorClass.PERMANENT), ("invalid_blocks", ErrorClass.PERMANENT),
    ("not_in_channel", ErrorClass.PERMANENT), ("restricted_action_read_only_channel", ErrorClass.PERMANENT),
    ("rate_limited", ErrorClass.TEMPORARY), ("internal_error", ErrorClass.TEMPORARY),
    ("service_unavailable", ErrorClass.TEMPORARY), ("team_added_to_org", ErrorClass.TEMPORARY),
    ("missing_scope", ErrorClass.CONFIGURATION), ("invalid_auth", ErrorClass.CONFIGURATION),
    ("token_revoked", ErrorClass.CONFIGURATION), ("account_inactive", ErrorClass.CONFIGURATION),
    ("token_expired", ErrorClass.CONFIGURATION), ("not_allowed_token_type", ErrorClass.CONFIGURATION),
    ("invalid_refresh_token", ErrorClass.CONFIGURATION), ("something_new", ErrorClass.PERMANENT),
])
def test_http_200_ok_false_is_classified_from_the_body(code: str, cls: ErrorClass) -> None:
    err = classify(200, {}, {"ok": False, "error": code})
    assert err is not None and err.error_class is cls and err.code == code
    reauth = code in ("invalid_auth", "token_revoked", "account_inactive", "token_expired", "invalid_refresh_token")
    assert bool(err.details.get("reauth")) is reauth
    assert bool(err.details.get("refresh")) is (code == "token_expired")


def test_success_ratelimit_and_server_errors() -> None:
    assert classify(200, {}, {"ok": True, "channel": "C1", "ts": "1.2"}) is None
    err = classify(429, {"Retry-After": "7"}, {"ok": False, "error": "ratelimited"})
    assert err is not None and err.error_class is ErrorClass.TEMPORARY and err.code == "ratelimited"
    err = classify(503, {}, {"ok": False, "error": "service_unavailable"})
    assert err is not None and err.error_class is ErrorClass.TEMPORARY
    err = classify(200, {}, "<html>")
    assert err is not None and err.error_class is ErrorClass.TEMPORARY and err.code == "malformed_response"


def test_missing_scope_and_invalid_blocks_keep_slacks_details() -> None:
    err = classify(200, {}, {"ok": False, "error": "missing_scope", "needed": "users:read.email",
                             "provided": "channels:join,channels:read,chat:write"})
    assert err is not None and err.details["needed"] == "users:read.email"
    assert "users:read.email" in err.message and "chat:write" in err.message
    err = classify(200, {}, {"ok": False, "error": "invalid_blocks", "errors": [
        "failed to match all allowed schemas [json-pointer:/blocks/3/text]",
        "invalid additional property: emoji [json-pointer:/blocks/3/text]"]})
    assert err is not None and "/blocks/3/text" in err.message and len(err.details["errors"]) == 2


# ---- Block Kit ---------------------------------------------------------------------------------
def section(text: str, **kw) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **kw}


def button(label: str, action_id: str = "a") -> dict:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}}


def test_valid_blocks_pass_and_come_back_as_slack_receives_them() -> None:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Deal won"}}, section("*Acme*"),
              {"type": "divider"}, {"type": "actions", "block_id": "osi:wf", "elements": [button("Go")]},
              {"type": "context", "elements": [{"type": "mrkdwn", "text": "note"}]}]
    out = validate_blocks(blocks)
    assert [b["type"] for b in out] == ["header", "section", "divider", "actions", "context"]
    assert out[3]["elements"][0]["text"] == {"type": "plain_text", "text": "Go"}


@pytest.mark.parametrize(("blocks", "pointer", "fragment"), [
    ([{"type": "divider"}] * 51, "/blocks", "no more than 50"),
    ([{"type": "divider"}, section("x" * 3001)], "/blocks/1", "3000"),
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0", "150"),
    ([{"type": "actions", "elements": [button("ok"), button("b" * 76, "b")]}], "/blocks/0/elements/1", "75"),
    ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "/blocks/0", "10"),
    ([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "x"}}], "/blocks/0", "unknown block type"),
    ([section("x", emoji=True)], "/blocks/0", "additional property: emoji"),
    ([{"text": {"type": "mrkdwn", "text": "x"}}], "/blocks/0", "type"),
    ([section("a", block_id="b1"), section("b", block_id="b1")], "/blocks/1", "already used"),
    ([{"type": "section"}], "/blocks/0", "text or fields"),
    ([section("a", block_id="x" * 256)], "/blocks/0", "255"),
])
def test_invalid_blocks_are_permanent_and_point_at_the_block(blocks, pointer, fragment) -> None:
    with pytest.raises(InvalidBlocks) as exc:
        validate_blocks(blocks)
    err = exc.value
    assert isinstance(err, PermanentError) and err.error_class is ErrorClass.PERMANENT
    assert err.details["pointer"] == pointer and err.message.startswith(pointer)
    assert fragment in err.message


def test_attachments_views_and_format() -> None:
    with pytest.raises(InvalidBlocks) as exc:
        validate_blocks("not a list")
    assert exc.value.code == "invalid_blocks_format"
    with pytest.raises(PermanentError) as exc2:
        validate_attachments([{"text": "x"}] * 101)
    assert exc2.value.code == "too_many_attachments"
    with pytest.raises(InvalidBlocks) as exc3:
        validate_attachments([{"blocks": [section("x" * 3001)]}])
    assert exc3.value.details["pointer"] == "/attachments/0/blocks/0"
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Approve"},
            "blocks": [{"type": "divider"}] * 100}
    assert len(validate_view(view)["blocks"]) == 100
    with pytest.raises(PermanentError):
        validate_view({**view, "title": {"type": "plain_text", "text": "t" * 25}})
    with pytest.raises(InvalidBlocks):
        validate_view({**view, "blocks": [{"type": "divider"}] * 101})


def test_variables_and_plain_text() -> None:
    v = {"name": "Ann", "deal": {"value": "$5"}, "CUSTOMER_NAME": "Acme"}
    assert render_text("Hi {name}: {{ deal.value }} for {CUSTOMER_NAME} {unknown} {}", v) == \
        "Hi Ann: $5 for Acme {unknown} {}"
    assert render([section("*{name}*")], v)[0]["text"]["text"] == "*Ann*"
    assert render_text("{name}", {}) == "{name}"
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Deal"}}, section("won by *Ann*"),
              {"type": "actions", "elements": [button("Open")]}]
    assert plain_text(None, blocks) == "Deal\nwon by *Ann*"
    assert plain_text("explicit", blocks) == "explicit"


# ---- models -------------------------------------------------------------------------------------
def test_opensyte_slack_action_maps_one_to_one() -> None:
    row = {"organizationId": "org1", "channel": "C0123ABCD", "message": "Hi {name}", "threadTs": "1503435956.000247",
           "replyBroadcast": True, "username": "OpenSyte", "iconEmoji": ":rocket:", "variables": {"name": "Ann"},
           "asUser": False, "integrationId": "cuid123", "fallback": [{"kind": "dm", "email": "ann@example.com"}]}
    inp = SendSlackMessageInput.model_validate(row)
    p = inp.primary()
    assert (p.channel, p.thread_ts, p.reply_broadcast, p.icon_emoji, p.text) == (
        "C0123ABCD", "1503435956.000247", True, ":rocket:", "Hi {name}")
    assert SendSlackMessageInput.model_validate(json.loads(inp.model_dump_json())) == inp


@pytest.mark.parametrize(("patch", "fragment"), [
    ({"channel": "general"}, "not a Slack conversation ID"),
    ({"asUser": True}, "asUser"),
    ({"replyBroadcast": True, "threadTs": None}, "reply_broadcast"),
    ({"message": None}, "no_text"),
    ({"userId": "U0123ABCD"}, "exactly one of channel"),
    ({"iconEmoji": "rocket"}, "icon_emoji"),
    ({"threadTs": "yesterday"}, "thread_ts"),
    ({"fallback": [{"kind": "dm"}]}, "exactly one of user_id or email"),
    ({"fallback": [{"kind": "pager"}]}, "kind"),
])
def test_bad_input_names_the_field(patch: dict, fragment: str) -> None:
    base = {"organizationId": "o", "channel": "C0123ABCD", "message": "x"}
    with pytest.raises(ValidationError) as exc:
        SendSlackMessageInput.model_validate({**base, **patch})
    assert fragment in str(exc.value)


def test_approval_input_needs_deciders() -> None:
    with pytest.raises(ValidationError, match="approvers"):
        SlackApprovalInput(organization_id="o", channel="C0123ABCD", title="t")
    ok = SlackApprovalInput(organization_id="o", channel="C0123ABCD", title="t", approver_channel="C0999ZZZZ")
    assert ok.approvers == []
    with pytest.raises(ValidationError, match="not a Slack user ID"):
        PostMessageInput(organization_id="o", user_id="bob", text="x")
