"""Rate limits count at the provider-side arrival instant; latency jitter before or after that instant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.app import create_app
from sandbox.state import SandboxState


class Clock:
    """The sandbox's monotonic clock, set by the test: requests are paced on it exactly."""

    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


class Sandbox:
    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http, self.clock = http, clock

    async def faults(self, provider: str, **cfg: Any) -> None:
        (await self.http.put(f"/_sandbox/faults/{provider}", json=cfg)).raise_for_status()

    async def number(self, pid: str, mps: int) -> None:
        (await self.http.post("/_sandbox/whatsapp/phone_numbers", json={
            "phone_number_id": pid, "token": f"tok-{pid}", "app_secret": "s", "throughput_mps": mps,
            "enforce_window": False})).raise_for_status()

    async def send(self, pid: str, i: int) -> httpx.Response:
        # A new recipient each time, so only the per-number throughput limit is in play.
        return await self.http.post(f"/whatsapp/v23.0/{pid}/messages", headers={"Authorization": f"Bearer tok-{pid}"},
                                    json={"messaging_product": "whatsapp", "to": f"+1555{i:07d}", "type": "text",
                                          "text": {"body": "hi"}})


@pytest.fixture
async def sbx() -> AsyncIterator[Sandbox]:
    clock = Clock()
    app = create_app(SandboxState(clock=clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as http:
        yield Sandbox(http, clock)


def is_throughput_error(r: httpx.Response) -> bool:
    return r.status_code == 400 and r.json()["error"]["code"] == 130429


@pytest.mark.parametrize("mps", [500, 1000])
async def test_upgraded_number_takes_its_throughput_in_one_second_and_not_one_more(sbx, mps):
    pid = f"10{mps}"
    await sbx.number(pid, mps)
    statuses = [(await sbx.send(pid, i)).status_code for i in range(mps)]  # all at one instant
    assert statuses == [200] * mps
    over = await sbx.send(pid, mps)
    assert is_throughput_error(over)
    err = over.json()["error"]
    assert err["message"] == "(#130429) Rate limit hit" and err["error_subcode"] == 2494055
    assert err["error_data"]["messaging_product"] == "whatsapp"
    sbx.clock.t += 1.0  # the window slides past every earlier arrival
    assert (await sbx.send(pid, mps + 1)).status_code == 200
    view = (await sbx.http.get(f"/whatsapp/v23.0/{pid}", headers={"Authorization": f"Bearer tok-{pid}"})).json()
    assert view["throughput"] == {"level": "HIGH"}


async def paced_whatsapp(sbx: Sandbox, pid: str, n: int = 40, mps: int = 4) -> list[bool]:
    """Send n messages exactly 1/mps apart on the sandbox clock: the client keeps no margin at all."""
    await sbx.number(pid, mps)
    rejected = []
    for i in range(n):
        sbx.clock.t = 5000.0 + i / mps  # 0.25 s steps are exact in binary floating point
        rejected.append(is_throughput_error(await sbx.send(pid, i)))
    return rejected


async def test_exact_pacing_without_jitter_is_never_rejected(sbx):
    assert not any(await paced_whatsapp(sbx, "2001"))


async def test_inbound_jitter_makes_exact_pacing_hit_the_throughput_limit(sbx):
    await sbx.faults("whatsapp", jitter_ms=100, jitter_inbound_fraction=1.0, seed=3)
    rejected = await paced_whatsapp(sbx, "2002")
    assert 0 < sum(rejected) < len(rejected)


async def test_jitter_on_the_way_back_only_delays_answers(sbx):
    # Limits count at arrival: jitter after it (on the answer) cannot cause a rejection.
    await sbx.faults("whatsapp", jitter_ms=100, jitter_inbound_fraction=0.0, seed=3)
    assert not any(await paced_whatsapp(sbx, "2003"))


async def test_lognormal_jitter_is_seedable(sbx):
    runs = []
    for pid in ("2004", "2005"):
        await sbx.faults("whatsapp", jitter_ms=30, jitter_dist="lognormal", jitter_sigma=0.8,
                         jitter_inbound_fraction=0.7, seed=42)
        runs.append(await paced_whatsapp(sbx, pid, n=30))
    assert runs[0] == runs[1]  # same seed, same arrivals, same rejections
    assert any(runs[0])


async def slack_channel(sbx: Sandbox) -> tuple[str, str]:
    ws = (await sbx.http.post("/_sandbox/slack/workspaces", json={"name": "Pace"})).json()
    ch = (await sbx.http.post(f"/_sandbox/slack/workspaces/{ws['team_id']}/channels", json={"name": "p"})).json()
    tok = (await sbx.http.post("/_sandbox/slack/tokens", json={"team_id": ws["team_id"],
                                                               "scopes": ["chat:write"]})).json()
    return ch["id"], tok["access_token"]


async def paced_slack(sbx: Sandbox, n: int = 12) -> list[httpx.Response]:
    channel, token = await slack_channel(sbx)
    out = []
    for i in range(n):
        sbx.clock.t = 9000.0 + i  # exactly one post per second: Slack's per-channel pace
        out.append(await sbx.http.post("/slack/api/chat.postMessage", content=json.dumps(
            {"channel": channel, "text": f"m{i}"}), headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/json; charset=utf-8"}))
    return out


async def test_slack_exact_pacing_passes_without_jitter(sbx):
    assert all(r.status_code == 200 and r.json()["ok"] for r in await paced_slack(sbx))


async def test_slack_arrival_jitter_gets_paced_posts_ratelimited(sbx):
    await sbx.faults("slack", jitter_ms=300, jitter_inbound_fraction=1.0, seed=5)
    answers = await paced_slack(sbx)
    limited = [r for r in answers if r.status_code == 429]
    assert 0 < len(limited) < len(answers)
    assert all(r.json() == {"ok": False, "error": "ratelimited"} and int(r.headers["retry-after"]) >= 1
               for r in limited)
