"""Connection rows for webhook routing come from memory: no store query per webhook, a change made in this process
is seen at once, another process's within the cache's lifetime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from activities.whatsapp.webhooks import sign
from gateway.app import create_app
from store.db import Store
from tests import seed
from tests.servers import ServerThread
from worker.stack import free_port


class CountingReads:
    """Counts `get_connection` queries made through one store (installed on the instance, removed after)."""

    def __init__(self, store: Store) -> None:
        self.store, self.ids = store, []

    def __enter__(self) -> CountingReads:
        original = Store.get_connection

        def counting(connection_id: str) -> Any:
            self.ids.append(connection_id)
            return original(self.store, connection_id)

        self.store.get_connection = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        del self.store.get_connection


@pytest.fixture
def own_gateway(settings, runtime, client) -> Iterator[str]:
    """A gateway on the session's runtime, so its store can be watched."""
    srv = ServerThread(create_app(settings, rt=runtime, temporal=client), free_port()).start()
    yield srv.url
    srv.stop()


async def test_webhooks_do_not_query_the_connection_each_time_and_see_a_change_at_once(runtime, sandbox,
                                                                                       own_gateway) -> None:
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    url = f"{own_gateway}/webhooks/whatsapp/{wa.connection_id}"
    headers = {"X-Hub-Signature-256": sign(wa.app_secret, body)}
    with CountingReads(runtime.store) as reads:
        async with httpx.AsyncClient() as http:
            for _ in range(5):
                assert (await http.post(url, content=body, headers=headers)).status_code == 200
            assert reads.ids.count(wa.connection_id) <= 1, reads.ids

            # Changed in this process (`osi connections update`, the admin API): the next webhook reads it again.
            await runtime.store.run(runtime.store.update_connection, wa.connection_id,
                                    settings={**(await runtime.store.connection(wa.connection_id)).settings,
                                              "note": "changed"})
            before = reads.ids.count(wa.connection_id)
            assert (await http.post(url, content=body, headers=headers)).status_code == 200
            assert reads.ids.count(wa.connection_id) == before + 1
            cached = await runtime.store.connection(wa.connection_id)
            assert cached is not None and cached.settings["note"] == "changed"


async def test_another_process_change_is_seen_within_the_cache_lifetime_and_a_delete_at_once(settings) -> None:
    here = Store(settings.database_url, connection_cache_seconds=0.3)
    there = Store(settings.database_url)  # another process's store on the same database
    try:
        conn = await here.run(here.add_connection, "cache-org", "WHATSAPP_BUSINESS", f"c{free_port()}", {"v": 1})
        assert (await here.connection(conn.id)).settings == {"v": 1}  # type: ignore[union-attr]
        await there.run(there.update_connection, conn.id, settings={"v": 2})
        assert (await here.connection(conn.id)).settings == {"v": 1}  # type: ignore[union-attr]  # still cached
        await asyncio.sleep(0.35)
        assert (await here.connection(conn.id)).settings == {"v": 2}  # type: ignore[union-attr]
        await here.run(here.delete_connection, conn.id)
        assert await here.connection(conn.id) is None
        assert await here.connection("no-such-connection") is None
    finally:
        here.dispose()
        there.dispose()
