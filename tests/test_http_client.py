"""The runtime's sharded HTTP client: requests spread over the pools, the connection ceiling is kept."""

from __future__ import annotations

import httpx

from core.http import ShardedClient


async def test_requests_take_the_pools_in_turn_and_stream(sandbox) -> None:
    http = ShardedClient(shards=3, timeout=5, max_connections=30)
    served: list[int] = []
    for i, client in enumerate(http.clients):
        client.event_hooks["request"] = [lambda _req, i=i: _record(served, i)]
    try:
        answers = [await http.get(f"{sandbox.url}/_sandbox/healthz") for _ in range(6)]
        assert [a.json() for a in answers] == [{"status": "ok"}] * 6
        assert served == [0, 1, 2, 0, 1, 2]
        posted = await http.post(f"{sandbox.url}/_sandbox/sink/sharded", content=b"x")
        assert posted.status_code == 200
        async with http.stream("GET", f"{sandbox.url}/_sandbox/healthz") as resp:
            assert b"ok" in await resp.aread()
        assert (await http.request("GET", f"{sandbox.url}/_sandbox/healthz")).status_code == 200
    finally:
        await http.aclose()
    assert all(c.is_closed for c in http.clients)


async def _record(served: list[int], i: int) -> None:
    served.append(i)


def test_the_connection_ceiling_is_split_not_multiplied() -> None:
    http = ShardedClient(shards=4, timeout=5, max_connections=200)
    pools = [c._transport._pool for c in http.clients]  # type: ignore[attr-defined]
    assert len(pools) == 4 and sum(p._max_connections for p in pools) == 200
    single = ShardedClient(shards=0, timeout=5, max_connections=10)
    assert len(single.clients) == 1
    assert isinstance(single.clients[0], httpx.AsyncClient)
