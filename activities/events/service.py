"""Event subscriptions (managed by `osi events` and the admin API) and the nudges that start their delivery.

A subscription's signing secret is generated here, kept in Vault (`osi/events/{org}/{subscription}`) and shown
once. After any commit that queued events (`store.events.enqueue`), the process's listener signal-with-starts
the subscription's `EventDelivery` workflow; a nudge that is lost (the process died between the commit and
the signal, Temporal was down) is made up by the `event-outbox-sweep` schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from activities.events.models import SubscriptionSpec
from activities.events.settings import delivery_input
from core.egress import EgressRefused
from core.errors import PermanentError
from core.settings import Settings
from core.signing import new_secret
from store.events import EventStore, EventSubscription
from vault.credentials import ApiKeyCredentials

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger("osi.events")

DELIVERY_WORKFLOW = "EventDelivery"  # workflows/events.py, started by name
WAKE_SIGNAL = "wake"


def delivery_workflow_id(subscription_id: str) -> str:
    return f"osi-events:{subscription_id}"


def check_receiver_url(rt: Runtime, url: str) -> None:
    """Through the egress guard (core/egress.py): https to a public address; plain http only to
    OSI_EGRESS_PRIVATE_HOSTS in development mode. Addresses are checked again at each delivery."""
    try:
        rt.egress.check_static(url)
    except EgressRefused as exc:
        raise PermanentError(f"url: {exc}", code="invalid_event_subscription", details={"field": "url"}) from None


async def add_subscription(rt: Runtime, organization_id: str, spec: SubscriptionSpec, *,
                           actor: str) -> tuple[EventSubscription, str]:
    """Store it; its new signing secret goes to Vault and is returned once. Audited."""
    check_receiver_url(rt, spec.url)
    sub = await rt.store.run(EventStore(rt.store).add_subscription, organization_id, spec.url, spec.event_types,
                             spec.description, actor)
    secret = new_secret()
    await rt.vault.write(rt.vault.event_subscription_path(organization_id, sub.id),
                         ApiKeyCredentials(api_key=SecretStr(secret)))
    await rt.store.run(rt.store.audit, organization_id, actor, "events.add_subscription", "ok", target=sub.id,
                       detail={"url": spec.url, "event_types": spec.event_types})
    return sub, secret


async def rotate_secret(rt: Runtime, organization_id: str, subscription_id: str, *, actor: str) -> str | None:
    """A new signing secret (shown once); events signed from then on use it."""
    sub = await rt.store.run(EventStore(rt.store).subscription, subscription_id)
    if sub is None or sub.organization_id != organization_id:
        return None
    secret = new_secret()
    await rt.vault.write(rt.vault.event_subscription_path(organization_id, subscription_id),
                         ApiKeyCredentials(api_key=SecretStr(secret)))
    await rt.store.run(rt.store.audit, organization_id, actor, "events.rotate_secret", "ok", target=subscription_id)
    return secret


async def remove_subscription(rt: Runtime, organization_id: str, subscription_id: str, *, actor: str) -> bool:
    """Delete it and its secret; undelivered events are cancelled (its delivery workflow then ends)."""
    removed = await rt.store.run(EventStore(rt.store).remove_subscription, organization_id, subscription_id)
    if removed:
        await rt.vault.delete(rt.vault.event_subscription_path(organization_id, subscription_id))
        await rt.store.run(rt.store.audit, organization_id, actor, "events.remove_subscription", "ok",
                           target=subscription_id)
    return removed


async def send_test(rt: Runtime, organization_id: str, subscription_id: str) -> bool:
    """A `ping` event to one subscription (whatever types it chose)."""
    sub = await rt.store.run(EventStore(rt.store).subscription, subscription_id)
    if sub is None or sub.organization_id != organization_id:
        return False
    got = await rt.store.run(EventStore(rt.store).emit, organization_id,
                             [("ping", {"subscription_id": subscription_id}, None)], subscription_id=subscription_id)
    return bool(got)


async def nudge(client: Any, settings: Settings, subscription_ids: Iterable[str]) -> None:
    """Signal-with-start each subscription's delivery workflow (a running one just wakes up)."""
    for sub in sorted(set(subscription_ids)):
        await client.start_workflow(DELIVERY_WORKFLOW, delivery_input(settings, sub), id=delivery_workflow_id(sub),
                                    task_queue=settings.task_queue, start_signal=WAKE_SIGNAL)


def on_start(rt: Runtime, client: Any) -> None:
    """After every commit that queued events, nudge their subscriptions' delivery (on this process's loop)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def send(subs: set[str]) -> None:
        try:
            await nudge(client, rt.settings, subs)
        except Exception as exc:  # Temporal unreachable: the sweep schedule delivers them later
            log.warning("event delivery not nudged for %s: %s", sorted(subs), type(exc).__name__)

    def spawn(subs: set[str]) -> None:
        task = loop.create_task(send(subs))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def listener(subs: set[str]) -> None:
        try:
            loop.call_soon_threadsafe(spawn, subs)
        except RuntimeError:  # the loop is closed (process shutting down): the sweep makes up for it
            pass

    rt.store.on_events(listener)
