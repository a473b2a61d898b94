"""Maintenance workflows on Temporal schedules: a health sweep over connections, alert delivery."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.admin.alerts import AlertActivities, DeliverInput, DeliverResult
    from activities.admin.maintenance import CheckInput, MaintenanceActivities, SweepInput, SweepResult
    from core.policies import BOOKKEEPING, DELIVERY, LOOKUP


@workflow.defn(name="ConnectionHealthSweep")
class ConnectionHealthSweep:
    """Test every connection, warn about expiring credentials, report what is unhealthy."""

    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        refs = await workflow.execute_activity_method(
            MaintenanceActivities.list_connections, inp, **BOOKKEEPING.kwargs())
        result = SweepResult(checked=0)
        for ref in refs:
            check = await workflow.execute_activity_method(
                MaintenanceActivities.check_connection,
                CheckInput(connection=ref, expiry_warning_days=inp.expiry_warning_days,
                           run_connection_test=inp.run_connection_tests),
                **LOOKUP.kwargs())
            result.checked += 1
            if not check.healthy:
                result.unhealthy.append(check)
            if check.expiring:
                result.expiring.append(check)
        return result


@workflow.defn(name="DeliverAdminNotifications")
class DeliverAdminNotifications:
    """One round of alert delivery to every organization's routes (the schedule runs it every minute)."""

    @workflow.run
    async def run(self, inp: DeliverInput) -> DeliverResult:
        return await workflow.execute_activity_method(AlertActivities.deliver, inp, **DELIVERY.kwargs())


MAINTENANCE_WORKFLOWS: tuple[type, ...] = (ConnectionHealthSweep, DeliverAdminNotifications)
