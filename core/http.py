"""The runtime's HTTP client: a few pooled httpx clients used in turn (httpcore's pool scan is quadratic)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx


class ShardedClient:
    """`request`, `get`, `post` and `stream` over `shards` httpx.AsyncClients, round robin.

    httpcore 1.0.x re-scans every connection for every queued and active request each time one starts or
    ends (`_assign_requests_to_connections`, O(requests x connections)); with 50 sends in flight that scan
    was the largest single cost of a send. Splitting one pool of N connections into k pools of N/k cuts the
    work k-fold with the same connection ceiling (bench/pipeline_overhead.py: 1.9x -> 1.5x of plain httpx).
    """

    def __init__(self, *, shards: int, timeout: float, max_connections: int) -> None:
        shards = max(1, shards)
        per = max(1, max_connections // shards)
        self.clients = [httpx.AsyncClient(timeout=httpx.Timeout(timeout),
                                          limits=httpx.Limits(max_connections=per, max_keepalive_connections=per))
                        for _ in range(shards)]
        self._next = itertools.cycle(self.clients)

    def _pick(self) -> httpx.AsyncClient:
        return next(self._next)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self._pick().request(method, url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._pick().get(url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self._pick().post(url, **kwargs)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        async with self._pick().stream(method, url, **kwargs) as resp:
            yield resp

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
