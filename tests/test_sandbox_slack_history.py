"""Slack fake fidelity: chat.postMessage metadata and conversations.history (paging, filters, errors, tier 3)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.app import create_app
from sandbox.state import SandboxState


class Clock:
    """The sandbox's monotonic clock, moved by the test (Slack allows one post per second per channel)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Slack:
    http: httpx.AsyncClient
    clock: Clock
    team: str
    channel: str
    token: str

    async def call(self, method: str, token: str | None = None, **args: Any) -> dict[str, Any]:
        # With a charset, as slack_sdk sends it (Slack warns `missing_charset` otherwise).
        r = await self.http.post(f"/slack/api/{method}", content=json.dumps(args),
                                 headers={"Authorization": f"Bearer {token or self.token}",
                                          "Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def post(self, text: str, **args: Any) -> dict[str, Any]:
        self.clock.t += 1.5  # past the per-channel limit
        return await self.call("chat.postMessage", channel=self.channel, text=text, **args)

    async def history(self, **args: Any) -> dict[str, Any]:
        r = await self.http.get("/slack/api/conversations.history", params={"channel": self.channel, **args},
                                headers={"Authorization": f"Bearer {self.token}"})
        return dict(r.json())


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    clock = Clock()
    app = create_app(SandboxState(clock=clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as http:
        ws = (await http.post("/_sandbox/slack/workspaces", json={"name": "History"})).json()
        ch = (await http.post(f"/_sandbox/slack/workspaces/{ws['team_id']}/channels", json={"name": "ops"})).json()
        tok = (await http.post("/_sandbox/slack/tokens", json={
            "team_id": ws["team_id"], "scopes": ["chat:write", "channels:history", "groups:history"]})).json()
        yield Slack(http, clock, ws["team_id"], ch["id"], tok["access_token"])


META = {"event_type": "osi_send", "event_payload": {"intent": "i-1", "attempt": 2}}


async def test_metadata_is_stored_and_its_payload_shown_only_with_include_all_metadata(slack):
    posted = await slack.post("deployed", metadata=META)
    assert posted["ok"] and "warning" not in posted
    # Undeclared event types come back with event_type only (python-slack-sdk#1501).
    assert posted["message"]["metadata"] == {"event_type": "osi_send"}
    plain = await slack.history()
    assert plain["messages"][0]["metadata"] == {"event_type": "osi_send"}
    full = await slack.history(include_all_metadata="true")
    assert full["messages"][0]["metadata"] == META


async def test_metadata_as_a_json_string_in_a_form_body(slack):
    slack.clock.t += 1.5
    r = await slack.http.post("/slack/api/chat.postMessage", data={
        "token": slack.token, "channel": slack.channel, "text": "form", "metadata": json.dumps(META)})
    assert r.json()["ok"]
    assert (await slack.history(include_all_metadata="1"))["messages"][0]["metadata"] == META


async def test_unparseable_metadata_is_refused_and_nothing_is_posted(slack):
    slack.clock.t += 1.5
    r = await slack.http.post("/slack/api/chat.postMessage", data={
        "token": slack.token, "channel": slack.channel, "text": "x", "metadata": "{not json"})
    assert r.status_code == 200 and r.json() == {"ok": False, "error": "invalid_metadata_format"}
    assert await slack.post("x", metadata=["a list"]) == {"ok": False, "error": "invalid_metadata_format"}
    assert (await slack.history())["messages"] == []


@pytest.mark.parametrize("meta", [{"event_type": "osi.send", "event_payload": {}},
                                  {"event_payload": {"a": 1}},
                                  {"event_type": "osi_send", "event_payload": "not an object"}])
async def test_a_bad_metadata_schema_posts_the_message_without_it_and_warns(slack, meta):
    posted = await slack.post("still posted", metadata=meta)
    assert posted["ok"] and posted["warning"] == "invalid_metadata_schema"
    assert posted["response_metadata"]["warnings"] == ["invalid_metadata_schema"]
    hist = await slack.history(include_all_metadata="true")
    assert hist["messages"][0]["text"] == "still posted" and "metadata" not in hist["messages"][0]


async def test_declared_event_types_show_their_payload_without_asking(slack):
    (await slack.http.post("/_sandbox/slack/apps", json={
        "client_id": "1.2", "client_secret": "s", "signing_secret": "x",
        "metadata_event_types": ["osi_send"]})).raise_for_status()
    posted = await slack.post("declared", metadata=META)
    assert posted["message"]["metadata"] == META
    assert (await slack.history())["messages"][0]["metadata"] == META


async def test_history_is_newest_first_and_pages_with_next_ts_cursors(slack):
    tss = [(await slack.post(f"m{i}"))["ts"] for i in range(5)]
    first = await slack.history(limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    assert base64.b64decode(cursor).decode() == "next_ts:" + tss[2].replace(".", "")
    second = await slack.history(limit=2, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m2", "m1"]
    last = await slack.history(limit=2, cursor=second["response_metadata"]["next_cursor"])
    assert [m["text"] for m in last["messages"]] == ["m0"]
    assert last["has_more"] is False and "response_metadata" not in last
    assert last["pin_count"] == 0 and last["channel_actions_count"] == 0 and last["channel_actions_ts"] is None


async def test_history_limit_default_and_cap(slack):
    for i in range(3):
        await slack.post(f"m{i}")
    assert len((await slack.history())["messages"]) == 3
    assert len((await slack.history(limit=5000))["messages"]) == 3  # capped at 999, not refused
    assert (await slack.history(cursor="bm9wZQ=="))["error"] == "invalid_cursor"


async def test_history_oldest_latest_inclusive(slack):
    tss = [(await slack.post(f"m{i}"))["ts"] for i in range(4)]
    between = await slack.history(oldest=tss[0], latest=tss[3])
    assert [m["text"] for m in between["messages"]] == ["m2", "m1"]
    assert between["latest"] == tss[3] and between["oldest"] == tss[0]
    inclusive = await slack.history(oldest=tss[0], latest=tss[3], inclusive="true")
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1", "m0"]
    assert (await slack.history(oldest="yesterday"))["error"] == "invalid_ts_oldest"
    assert (await slack.history(latest="soon"))["error"] == "invalid_ts_latest"


async def test_thread_replies_stay_out_of_channel_history_unless_broadcast(slack):
    parent = await slack.post("parent")
    await slack.post("quiet reply", thread_ts=parent["ts"])
    await slack.post("loud reply", thread_ts=parent["ts"], reply_broadcast=True)
    assert [m["text"] for m in (await slack.history())["messages"]] == ["loud reply", "parent"]


async def test_history_errors_as_slack_gives_them(slack):
    ws = f"/_sandbox/slack/workspaces/{slack.team}/channels"
    outside = (await slack.http.post(ws, json={"name": "elsewhere", "bot_member": False})).json()["id"]
    secret = (await slack.http.post(ws, json={"name": "secret", "is_private": True, "bot_member": False})).json()
    private = (await slack.http.post(ws, json={"name": "private", "is_private": True})).json()["id"]
    narrow = (await slack.http.post("/_sandbox/slack/tokens", json={
        "team_id": slack.team, "scopes": ["chat:write"]})).json()["access_token"]

    assert await slack.call("conversations.history", channel="C0NOPE") == {"ok": False,
                                                                            "error": "channel_not_found"}
    assert (await slack.call("conversations.history", channel=secret["id"]))["error"] == "channel_not_found"
    assert await slack.call("conversations.history", channel=outside) == {"ok": False, "error": "not_in_channel"}
    assert (await slack.call("conversations.history", channel=private))["ok"] is True
    assert await slack.call("conversations.history", narrow, channel=slack.channel) == {
        "ok": False, "error": "missing_scope", "needed": "channels:history", "provided": "chat:write"}
    assert (await slack.call("conversations.history", narrow, channel=private))["needed"] == "groups:history"
    assert await slack.call("conversations.history", "xoxb-forged", channel=slack.channel) == {
        "ok": False, "error": "invalid_auth"}


async def test_history_is_tier_3_fifty_a_minute_then_429_with_retry_after(slack):
    for _ in range(50):
        assert (await slack.history())["ok"]
    r = await slack.http.get("/slack/api/conversations.history", params={"channel": slack.channel},
                             headers={"Authorization": f"Bearer {slack.token}"})
    assert r.status_code == 429 and r.json() == {"ok": False, "error": "ratelimited"}
    assert r.headers["retry-after"] == "60"
    slack.clock.t += 60.0
    assert (await slack.history())["ok"]


async def test_several_warnings_are_comma_separated(slack):
    slack.clock.t += 1.5
    r = await slack.http.post("/slack/api/chat.postMessage",  # JSON without a charset: missing_charset too
                              json={"channel": slack.channel, "text": "x", "metadata": {"event_type": "a.b"}},
                              headers={"Authorization": f"Bearer {slack.token}"})
    doc = r.json()
    assert doc["ok"] and doc["warning"] == "invalid_metadata_schema,missing_charset"
    assert doc["response_metadata"]["warnings"] == ["invalid_metadata_schema", "missing_charset"]
