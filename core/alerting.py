"""Waking an organization's alert delivery workflow when an alert is recorded (signal-with-start).

The alert row in the store is the outbox; the `wake` signal only says "look again". A wake that never arrives
(Temporal down, a process without a client) loses nothing: the next alert, `osi alerts deliver` or the hourly
health sweep wakes the workflow, which delivers everything still due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from core.settings import Settings

log = logging.getLogger("osi.alerts")

ALERT_WORKFLOW = "AdminAlertDelivery"
WAKE_SIGNAL = "wake"

AlertHook = Callable[[str], Awaitable[None]]


def alert_workflow_id(organization_id: str) -> str:
    """One long-lived delivery workflow per organization (tenants never wait on each other)."""
    return f"osi-alerts-{organization_id}"


async def wake(client: Client, task_queue: str, organization_id: str) -> str:
    """Signal the organization's delivery workflow, starting it if it is not running; its workflow id."""
    wf_id = alert_workflow_id(organization_id)
    await client.start_workflow(
        ALERT_WORKFLOW, {"organization_id": organization_id}, id=wf_id, task_queue=task_queue,
        start_signal=WAKE_SIGNAL)
    return wf_id


def waker(client: Client, task_queue: str) -> AlertHook:
    """The hook a process with a Temporal client gives its Runtime (`Runtime.alert_hook`)."""

    async def hook(organization_id: str) -> None:
        await wake(client, task_queue, organization_id)

    return hook


def lazy_waker(settings: Settings, connect: Callable[[Settings], Awaitable[Client]]) -> AlertHook:
    """For short-lived processes (the CLI): connect to Temporal on the first alert only."""
    client: Client | None = None
    lock = asyncio.Lock()

    async def hook(organization_id: str) -> None:
        nonlocal client
        async with lock:
            if client is None:
                client = await connect(settings)
        await wake(client, settings.task_queue, organization_id)

    return hook
