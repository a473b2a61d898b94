"""The egress guard: user-supplied URLs reach public https only, at the address that was checked."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from temporalio.exceptions import ApplicationError

from activities.admin.alerts import AlertActivities, DueInput, RouteSpec, add_route
from core.egress import EgressGuard, EgressRefused
from core.errors import PermanentError
from core.policies import ALERT
from tests.activity_env import activity_env
from tests.servers import ServerThread

PUBLIC = "93.184.216.34"


def guard(resolver=None, transport=None, **kw) -> EgressGuard:
    return EgressGuard(dev_mode=kw.pop("dev_mode", False), private_hosts=kw.pop("private_hosts", set()),
                       resolver=resolver, transport=transport, **kw)


class Recorder(httpx.AsyncBaseTransport):
    """Stands in for the network: records where a request would connect, answers 200 (no traffic leaves)."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(200, text="ok")


def refused_urls(vault_port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{vault_port}/v1/sys/health", "http://localhost:5432", "https://10.0.0.1",
        "https://169.254.169.254/latest/meta-data/", "https://127.0.0.1", "https://localhost:5432",
        "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:a9fe:a9fe]/", "https://[fe80::1]/",
        "https://[fd00:ec2::254]/", "https://[fc00::1]/", "https://[64:ff9b::a00:1]/", "https://100.64.0.1/",
        "https://0.0.0.0/", "https://192.168.1.1/", "https://172.16.0.1/", "https://224.0.0.1/",
        "https://metadata.google.internal/computeMetadata/v1/", "https://printer.local/", "https://intranet/",
        "http://example.com/hook", "ftp://example.com/x", "https://user:pw@example.com/", "file:///etc/passwd",
    ]


@pytest.mark.parametrize("index", range(len(refused_urls(8200))))
async def test_each_non_public_destination_is_refused_before_any_connection(stack, index) -> None:
    url = refused_urls(int(stack.vault_addr.rsplit(":", 1)[1]))[index]
    rec = Recorder()
    g = guard(transport=rec)
    with pytest.raises(EgressRefused):
        await g.client.get(url)
    assert rec.seen == []


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    for answer in (["10.1.2.3"], ["169.254.169.254"], [PUBLIC, "127.0.0.1"], ["::1"], ["::ffff:10.0.0.1"],
                   ["100.100.100.200"], ["fd12::1"]):
        async def resolve(host: str, port: int, answer=answer) -> list[str]:
            return answer
        rec = Recorder()
        with pytest.raises(EgressRefused, match="non-public"):
            await guard(resolve, rec).client.post("https://hooks.example.com/x", json={})
        assert rec.seen == []


async def test_dns_rebinding_cannot_reach_inside() -> None:
    """A name that resolves public first, private next: the request connects to the address that was checked
    (resolved once, pinned), and the next request, which sees the private answer, is refused."""
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    rec = Recorder()
    g = guard(rebinding, rec)
    r = await g.client.post("https://rebind.example.com/hook", json={"a": 1})
    assert r.status_code == 200 and len(calls) == 1
    sent = rec.seen[0]
    assert sent.url.host == PUBLIC  # pinned to the checked address
    assert sent.headers["host"] == "rebind.example.com"  # the name travels in Host and SNI
    assert sent.extensions["sni_hostname"] == "rebind.example.com"
    with pytest.raises(EgressRefused, match="non-public"):
        await g.client.post("https://rebind.example.com/hook", json={"a": 1})
    assert len(rec.seen) == 1 and len(calls) == 2


async def test_redirects_are_checked_again() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC]

    class Redirecting(Recorder):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            return httpx.Response(302, headers={"Location": "https://169.254.169.254/latest/meta-data/"})

    rec = Redirecting()
    with pytest.raises(EgressRefused):
        await guard(resolve, rec).client.get("https://files.example.com/a.png")
    assert len(rec.seen) == 1  # the first hop only


async def test_bodies_are_capped() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC]

    class Big(Recorder):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b"x" * 5000)

    g = guard(resolve, Big(), max_response_bytes=1000)
    async with g.client.stream("GET", "https://big.example.com/") as resp:
        with pytest.raises(EgressRefused, match="cap"):
            await g.read_capped(resp)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    got: list[dict] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict:
        got.append({"host": request.headers.get("host"), "body": (await request.body()).decode()})
        return {"ok": True}

    srv = ServerThread(app).start()
    yield srv.url, got
    srv.stop()


async def test_a_pinned_request_really_connects_to_the_checked_address(receiver) -> None:
    """End to end on this machine: a name exempted by OSI_EGRESS_PRIVATE_HOSTS, resolved by the guard to
    127.0.0.1, is connected to at that address with the name in the Host header."""
    url, got = receiver
    port = int(url.rsplit(":", 1)[1])

    async def resolve(host: str, p: int) -> list[str]:
        assert host == "hooks.osi.test"
        return ["127.0.0.1"]

    g = guard(resolve, dev_mode=True, private_hosts={"hooks.osi.test"})
    r = await g.client.post(f"http://hooks.osi.test:{port}/hook", content=b"hello")
    assert r.json() == {"ok": True} and got == [{"host": f"hooks.osi.test:{port}", "body": "hello"}]
    with pytest.raises(socket.gaierror):  # the name itself does not resolve: only the guard's answer was used
        await asyncio.get_running_loop().getaddrinfo("hooks.osi.test", port)
    await g.aclose()


async def test_alert_routes_use_the_guard(runtime, stack) -> None:
    """Outside development mode an organization cannot point an alert route inside; the worker never posts."""
    vault_port = stack.vault_addr.rsplit(":", 1)[1]
    prod = runtime.settings.model_copy(update={"dev_mode": False, "egress_private_hosts": ""})
    saved = runtime.egress
    runtime.egress = EgressGuard.from_settings(prod)
    try:
        for url in (f"http://127.0.0.1:{vault_port}/v1/sys/health", "http://localhost:5432", "https://10.0.0.1",
                    "https://169.254.169.254"):
            with pytest.raises(PermanentError, match="url"):
                await add_route(runtime, "egress-org", RouteSpec(kind="webhook", url=url), actor="t")
        # A route stored before (or whose name later resolves inside) fails at delivery, without a request.
        await add_route(runtime, "egress-org", RouteSpec(kind="webhook", url="https://a.example.com/h"),
                                   actor="t")

        async def inside(host: str, port: int) -> list[str]:
            return ["10.0.0.5"]

        runtime.egress = EgressGuard.from_settings(prod, resolver=inside, transport=Recorder())
        runtime.store.notify_admins("egress-org", "configuration_error", "something broke")
        acts = AlertActivities(runtime)
        jobs = await acts.due(DueInput(organization_id="egress-org"))
        assert [j.kind for j in jobs] == ["webhook"]
        with pytest.raises(ApplicationError) as failed:
            await activity_env(options=ALERT).run(acts.deliver_webhook, jobs[0])
        assert failed.value.non_retryable and "egress_refused" in str(failed.value.details)
        assert runtime.egress._transport.seen == []  # type: ignore[union-attr]
    finally:
        await runtime.egress.aclose()
        runtime.egress = saved
