"""Health sweep workflow, credential expiry warnings and rotation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from activities.admin.maintenance import SweepInput, SweepResult
from core.connections import rotate_credentials
from tests import seed
from vault.credentials import BearerTokenCredentials


async def test_sweep_finds_unhealthy_and_expiring_connections(client, worker, runtime, sandbox, task_queue):
    org = f"org_{uuid.uuid4().hex[:8]}"
    good = await seed.whatsapp_connection(runtime, sandbox.url, org=org, name="good")
    bad = await seed.whatsapp_connection(runtime, sandbox.url, org=org, name="bad")
    expiring = await seed.whatsapp_connection(runtime, sandbox.url, org=org, name="expiring")
    runtime.store.update_connection(expiring.connection_id,
                                    credentials_expire_at=datetime.now(UTC) + timedelta(days=2))
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox.url}/_sandbox/whatsapp/tokens/expire", json={"token": bad.token})
    res = await client.execute_workflow("ConnectionHealthSweep", SweepInput(organization_id=org),
                                        id=f"sweep-{org}", task_queue=task_queue, result_type=SweepResult)
    assert res.checked == 3
    assert [c.connection.name for c in res.unhealthy] == ["bad"]
    assert [c.connection.name for c in res.expiring] == ["expiring"]
    kinds = {(n.connection_id, n.kind) for n in runtime.store.notifications(org)}
    assert (expiring.connection_id, "credentials_expiring") in kinds
    assert (bad.connection_id, "reauth_required") in kinds
    assert runtime.store.get_connection(good.connection_id).health == "healthy"


async def test_rotation_replaces_the_secret_and_revives_the_connection(runtime, sandbox):
    wa = await seed.whatsapp_connection(runtime, sandbox.url)
    conn = runtime.store.get_connection(wa.connection_id)
    runtime.store.update_connection(conn.id, status="needs_reauth", health="unhealthy")
    new_token = "EAArotated" + uuid.uuid4().hex
    async with httpx.AsyncClient() as http:
        await http.patch(f"{sandbox.url}/_sandbox/whatsapp/phone_numbers/{wa.phone_number_id}",
                         json={"token": new_token})
    await rotate_credentials(runtime, wa.organization_id, "WHATSAPP_BUSINESS", wa.name,
                             BearerTokenCredentials(token=SecretStr(new_token), app_secret=SecretStr(wa.app_secret)))
    got = runtime.store.get_connection(conn.id)
    assert (got.status, got.health) == ("active", "unknown")
    creds = await runtime.vault.read(runtime.credentials_path(got))
    assert isinstance(creds, BearerTokenCredentials) and creds.token.get_secret_value() == new_token
    from core.connections import test_connection

    assert (await test_connection(runtime, wa.organization_id, "WHATSAPP_BUSINESS", wa.name))["ok"] is True
    assert any(e.action == "connection.rotate" for e in runtime.store.audit_log(wa.organization_id))


async def test_schedules_are_created_once_and_the_per_minute_alert_schedule_retired(client, settings):
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleIntervalSpec,
        ScheduleSpec,
        ScheduleState,
    )
    from temporalio.service import RPCError

    from worker.schedules import EVENT_SWEEP_ID, HEALTH_SWEEP_ID, RETIRED_SCHEDULES, ensure_schedules

    # What an older stack left behind: alert delivery started every minute by a schedule.
    await client.create_schedule(RETIRED_SCHEDULES[0], Schedule(
        action=ScheduleActionStartWorkflow("DeliverAdminNotifications", {}, id="old", task_queue="nowhere"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]), state=ScheduleState(
            paused=True)))
    first = await ensure_schedules(client, settings)
    try:
        second = await ensure_schedules(client, settings)
        assert first == [HEALTH_SWEEP_ID, EVENT_SWEEP_ID] and second == []
        sweep = await client.get_schedule_handle(HEALTH_SWEEP_ID).describe()
        assert sweep.schedule.spec.intervals[0].every.total_seconds() == 3600
        with pytest.raises(RPCError):
            await client.get_schedule_handle(RETIRED_SCHEDULES[0]).describe()
    finally:
        # Left running, they would fire in the middle of other tests (the whole suite shares one server).
        for schedule_id in first:
            await client.get_schedule_handle(schedule_id).delete()
