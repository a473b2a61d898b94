"""Slack fan-out benchmark: M posts to each of K channels at once, through the action pipeline.

Slack allows about one chat.postMessage per second per channel. Prints our rate as a ratio of that limit and
against a plain sequential httpx loop (round-robin over the channels, honouring Retry-After on a 429, as a simple
client would) against the same sandbox, behind the same network (latency + lognormal jitter), in the same run.
429s are counted on the sandbox's side. `ratio_to_limit` is end to end (M posts per channel ideally take M - 1
seconds after the first); `provider_side_ratio` is per channel, from the sandbox's first to last admitted
arrival, averaged. Starts OpenBao and the sandbox itself; Temporal is not involved (activities are called
directly).

The last line is `RESULT {json}`: {"bench": "slack_fanout", "rows": [one per round, with keys messages,
seconds, ratio_to_limit, provider_side_ratio, ratio_to_plain_loop, rejected_429, plain_rejected_429, ...],
"median": {ratio_to_limit, provider_side_ratio, ratio_to_plain_loop, rejected_429}}.

Usage: python bench/slack_fanout.py [--channels 20] [--per-channel 5] [--rounds 1] [--jitter-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from activities.slack.activities import SlackActivities
from activities.slack.models import PostMessageInput
from activities.slack.seed import create_workspace, direct_connection, ensure_app
from core.runtime import Runtime
from core.settings import Settings
from worker.migrate import upgrade
from worker.registry import registry
from worker.stack import Stack, child_on_free_port


async def channel_stats(sandbox_url: str, team: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        chans = (await http.get(f"{sandbox_url}/_sandbox/slack/stats")).json().get("channels") or {}
    return {k: v for k, v in chans.items() if k.startswith(f"{team}:")}


async def plain_loop(sandbox_url: str, token: str, channels: list[str], per_channel: int) -> float:
    """One post after another, round-robin over the channels; a 429 is waited out (Retry-After) and retried."""
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        for j in range(per_channel):
            for cid in channels:
                while True:
                    r = await http.post(f"{sandbox_url}/slack/api/chat.postMessage", headers=headers,
                                        json={"channel": cid, "text": f"plain {j}"})
                    if r.status_code != 429:
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        return time.perf_counter() - t0


async def run_bench(rt: Runtime, sandbox_url: str, channels: int, per_channel: int,
                    plain: bool = True) -> dict[str, Any]:
    await ensure_app(rt, sandbox_url, rt.settings.gateway_public_url)
    names = {f"c{i}": {} for i in range(channels)}
    ws = await create_workspace(sandbox_url, name="bench", channels=names)
    org = f"bench-{uuid.uuid4().hex[:8]}"
    _, issued = await direct_connection(rt, sandbox_url, org, ws)
    acts = SlackActivities(rt)
    total = channels * per_channel
    ids = list(ws.channels.values())

    t0 = time.perf_counter()
    await asyncio.gather(*[
        acts.post_message(PostMessageInput(organization_id=org, channel=cid, text=f"m{j}"))
        for cid in ids for j in range(per_channel)])
    ours = time.perf_counter() - t0
    seen = await channel_stats(sandbox_url, ws.team_id)
    ours_429 = sum(int(v["rejected_429"]) for v in seen.values())
    spans = [(int(v["admitted"]) - 1) / (v["last"] - v["first"]) for v in seen.values() if v["last"] > v["first"]]

    plain_seconds, plain_429 = 0.0, 0
    if plain:
        # The plain loop posts to fresh channels of the same workspace (ours are still inside their second).
        ws2 = await create_workspace(sandbox_url, name="bench-plain", channels=names)
        _, issued2 = await direct_connection(rt, sandbox_url, f"{org}-plain", ws2)
        plain_seconds = await plain_loop(sandbox_url, issued2["access_token"], list(ws2.channels.values()),
                                            per_channel)
        plain_429 = sum(int(v["rejected_429"]) for v in (await channel_stats(sandbox_url, ws2.team_id)).values())
    del issued

    # At exactly one post per second per channel, M posts take M - 1 seconds after the first.
    ideal = float(per_channel - 1)
    report = {"channels": channels, "per_channel": per_channel, "messages": total, "seconds": round(ours, 2),
              "msg_per_s": round(total / ours, 2), "ideal_seconds": ideal,
              "ratio_to_limit": round(ideal / ours, 3) if ours else None,
              "provider_side_ratio": round(statistics.mean(spans), 3) if spans else None,
              "plain_seconds": round(plain_seconds, 2),
              "ratio_to_plain_loop": round(plain_seconds / ours, 3) if plain_seconds else None,
              "rejected_429": ours_429, "plain_rejected_429": plain_429}
    print(f"{total} posts to {channels} channels through the pipeline in {ours:.2f} s = {total / ours:.2f} msg/s; "
          f"ratio to Slack's limit {report['ratio_to_limit']} (ideal {ideal:.0f} s), provider side "
          f"{report['provider_side_ratio']}; 429s from the sandbox: {ours_429}")
    if plain:
        print(f"plain sequential httpx loop (Retry-After honoured): {plain_seconds:.2f} s, {plain_429} x 429; "
              f"ratio to it {report['ratio_to_plain_loop']}")
    return report


async def main(channels: int, per_channel: int, rounds: int, latency_ms: float, jitter_ms: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="osi-bench-slack-"))
    stack = Stack()
    rows: list[dict[str, Any]] = []
    try:
        _, vport = stack.vault_on_free_port(log=tmp / "bao.log")
        _, sport = child_on_free_port(lambda port: stack.python(
            "sandbox", {"OSI_SANDBOX_PORT": str(port), "OSI_SANDBOX_LATENCY_MS": str(latency_ms),
                        "OSI_SANDBOX_JITTER_MS": str(jitter_ms)}, tmp / "sandbox.log"))
        settings = Settings(data_dir=tmp, vault_addr=f"http://127.0.0.1:{vport}",
                            database_url=f"sqlite:///{tmp / 'bench.db'}", sandbox_port=sport,
                            sections={"slack": {"base_url": f"http://127.0.0.1:{sport}/slack/api/"}},
                            _env_file=None)  # type: ignore[call-arg]
        upgrade(settings.database_url)
        rt = Runtime(settings, registry=registry())
        rt.vault.ensure_engines(settings.vault_transit_key)
        try:
            for _ in range(rounds):
                rows.append(await run_bench(rt, f"http://127.0.0.1:{sport}", channels, per_channel))
        finally:
            await rt.close()
    finally:
        stack.stop()
    median = {k: statistics.median(r[k] or 0.0 for r in rows)
              for k in ("ratio_to_limit", "provider_side_ratio", "ratio_to_plain_loop")}
    median["rejected_429"] = sum(r["rejected_429"] for r in rows)
    print(f"median over {len(rows)} round(s): ratio to the limit {median['ratio_to_limit']:.3f} (provider side "
          f"{median['provider_side_ratio']:.3f}), to the plain loop {median['ratio_to_plain_loop']:.3f}, "
          f"429: {median['rejected_429']}")
    print("RESULT " + json.dumps({"bench": "slack_fanout", "latency_ms": latency_ms, "jitter_ms": jitter_ms,
                                  "rows": rows, "median": median}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--per-channel", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the sandbox network's fixed delay")
    parser.add_argument("--jitter-ms", type=float, default=2.0, help="median of its lognormal jitter")
    args = parser.parse_args()
    asyncio.run(main(args.channels, args.per_channel, args.rounds, args.latency_ms, args.jitter_ms))
