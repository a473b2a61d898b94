"""Slack fan-out benchmark: M messages to each of K channels at once, through the action pipeline.

Slack allows about one chat.postMessage per second per channel. Prints our throughput as a ratio of
that limit (K msg/s) and, from a naive burst of the same posts without our limiter, how many 429s
Slack (the sandbox, which enforces the limit strictly) answers — against none with the limiter.
Starts OpenBao and the sandbox itself; Temporal is not involved (activities are called directly).

Usage: python bench/slack_fanout.py [--channels 20] [--per-channel 5]
"""

from __future__ import annotations

import argparse
import asyncio
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
from worker.stack import Stack, free_port, wait_port


async def run_bench(rt: Runtime, sandbox_url: str, channels: int, per_channel: int) -> dict[str, Any]:
    await ensure_app(rt, sandbox_url, rt.settings.gateway_public_url)
    names = {f"c{i}": {} for i in range(channels)}
    ws = await create_workspace(sandbox_url, name="bench", channels=names)
    org = f"bench-{uuid.uuid4().hex[:8]}"
    _, issued = await direct_connection(rt, sandbox_url, org, ws)
    acts = SlackActivities(rt)
    total = channels * per_channel

    async def stats() -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            return dict((await http.get(f"{sandbox_url}/_sandbox/slack/stats")).json())

    before = (await stats()).get("429_channel", 0)
    t0 = time.perf_counter()
    await asyncio.gather(*[
        acts.post_message(PostMessageInput(organization_id=org, channel=cid, text=f"m{j}"))
        for cid in ws.channels.values() for j in range(per_channel)])
    ours = time.perf_counter() - t0
    ours_429 = (await stats()).get("429_channel", 0) - before

    # The same burst without our limiter: what a naive client gets from Slack (after the channels'
    # windows from our own run have passed, so the first post to each channel is fair game).
    await asyncio.sleep(1.2)
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {"Authorization": f"Bearer {issued['access_token']}"}
        t0 = time.perf_counter()
        answers = await asyncio.gather(*[
            http.post(f"{sandbox_url}/slack/api/chat.postMessage", headers=headers, json={"channel": cid, "text": "x"})
            for cid in ws.channels.values() for _ in range(per_channel)])
        naive = time.perf_counter() - t0
    naive_429 = sum(1 for r in answers if r.status_code == 429)

    # At exactly one post per second per channel, M posts take M - 1 seconds after the first.
    ideal = float(per_channel - 1)
    ours_mps = total / ours
    report = {"channels": channels, "per_channel": per_channel, "messages": total, "seconds": round(ours, 2),
              "msg_per_s": round(ours_mps, 2), "ideal_seconds": ideal,
              "ratio_to_slack_limit": round(ideal / ours, 3) if ours else None,
              "429_with_limiter": ours_429, "429_without_limiter": naive_429, "naive_seconds": round(naive, 2)}
    print(f"{total} posts to {channels} channels through the pipeline in {ours:.2f} s = {ours_mps:.2f} msg/s")
    print(f"ratio to Slack's limit (1 msg/s per channel: {ideal:.0f} s for {per_channel} per channel): "
          f"{report['ratio_to_slack_limit']:.3f} (our window is 1.1 s, so at most 0.909)")
    print(f"429 answers with our limiter: {ours_429}; the same burst without it: {naive_429} of {total}")
    return report


async def main(channels: int, per_channel: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="osi-bench-slack-"))
    stack = Stack()
    vport, sport = free_port(), free_port()
    try:
        stack.vault(vport, log=tmp / "bao.log")
        settings = Settings(data_dir=tmp, vault_addr=f"http://127.0.0.1:{vport}",
                            database_url=f"sqlite:///{tmp / 'bench.db'}", sandbox_port=sport,
                            sections={"slack": {"base_url": f"http://127.0.0.1:{sport}/slack/api/"}},
                            _env_file=None)  # type: ignore[call-arg]
        proc = stack.python("sandbox", {"OSI_SANDBOX_PORT": str(sport)}, tmp / "sandbox.log")
        wait_port("127.0.0.1", sport, 30, proc)
        upgrade(settings.database_url)
        rt = Runtime(settings, registry=registry())
        rt.vault.ensure_engines(settings.vault_transit_key)
        try:
            await run_bench(rt, f"http://127.0.0.1:{sport}", channels, per_channel)
        finally:
            await rt.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--per-channel", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.channels, args.per_channel))
