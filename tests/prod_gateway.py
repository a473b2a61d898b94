"""A gateway outside development mode (operator key set, no open codec) on the session's stack, for security tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from core.settings import Settings
from gateway.app import create_app
from tests.servers import ServerThread
from worker.stack import reserve_port


@dataclass
class ProdGateway:
    url: str
    operator_key: str
    settings: Settings


@pytest.fixture(scope="session")
def prod_gateway(settings: Settings, runtime, client) -> Iterator[ProdGateway]:
    key = "osk_operator_" + secrets.token_urlsafe(16)
    sock = reserve_port()
    port = int(sock.getsockname()[1])
    prod = settings.model_copy(update={"dev_mode": False, "admin_api_key": SecretStr(key), "gateway_port": port})
    srv = ServerThread(create_app(prod, rt=runtime, temporal=client), sock).start()
    yield ProdGateway(srv.url, key, prod)
    srv.stop()
