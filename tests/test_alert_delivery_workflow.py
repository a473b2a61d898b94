"""AdminAlertDelivery on Temporal's time-skipping test server, with stand-in activities under the real names:
Temporal retries each (alert, route), gives up after the policy's attempts, never lets one route hold up
another, wakes on the signal and continues as new."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.admin.alerts import AlertDeliveryInput, AlertJob, DeliveryRecord, DueInput
from activities.slack.models import MessageRef, PostMessageInput
from core.alerting import WAKE_SIGNAL
from workflows.maintenance import AdminAlertDelivery


@pytest.fixture
def env(time_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_env  # conftest's: the worker's data converter, one test server per test


@dataclass
class FakeAlerts:
    """The store and the receivers, in memory: jobs to hand out, what each attempt did, what was recorded."""

    jobs: list[AlertJob] = field(default_factory=list)
    records: dict[tuple[int, str], DeliveryRecord] = field(default_factory=dict)
    attempts: dict[tuple[int, str], int] = field(default_factory=dict)
    webhook: Callable[[AlertJob, int], None] = lambda job, attempt: None
    slack: Callable[[PostMessageInput, int], None] = lambda post, attempt: None
    dues: int = 0

    def activities(self) -> list[Callable[..., object]]:
        @activity.defn(name="admin.due_alerts")
        async def due(inp: DueInput) -> list[AlertJob]:
            self.dues += 1
            busy = {(r.notification_id, r.route_id) for r in inp.exclude}
            return [j for j in self.jobs if (j.notification_id, j.route_id) not in busy
                    and (j.notification_id, j.route_id) not in self.records]

        @activity.defn(name="admin.deliver_webhook")
        async def deliver_webhook(job: AlertJob) -> None:
            key = (job.notification_id, job.route_id)
            self.attempts[key] = activity.info().attempt
            self.webhook(job, activity.info().attempt)

        @activity.defn(name="slack.post_message")
        async def post_message(post: PostMessageInput) -> MessageRef:
            key = tuple(int(x) if x.isdigit() else x for x in (post.idempotency_key or "").split(":")[1:])
            self.attempts[key] = activity.info().attempt  # type: ignore[index]
            self.slack(post, activity.info().attempt)
            return MessageRef(channel=post.channel or "D1", ts="1.0")

        @activity.defn(name="admin.record_alert_delivery")
        async def record(rec: DeliveryRecord) -> None:
            self.records[(rec.notification_id, rec.route_id)] = rec

        return [due, deliver_webhook, post_message, record]


def webhook_job(n: int, route: str = "hook") -> AlertJob:
    return AlertJob(notification_id=n, route_id=route, kind="webhook", organization_id="acme")


def slack_job(n: int, route: str = "slack") -> AlertJob:
    return AlertJob(notification_id=n, route_id=route, kind="slack", organization_id="acme", connection="default",
                    channel="C0OPS00001", text=f"alert {n}")


def temporary(message: str) -> ApplicationError:
    return ApplicationError(message, {"error_class": "TemporaryError", "code": 503, "message": message},
                            type="TemporaryError")


def permanent(code: str) -> ApplicationError:
    return ApplicationError(code, {"error_class": "PermanentError", "code": code, "message": code},
                            type="PermanentError", non_retryable=True)


async def run_until(env: WorkflowEnvironment, done: Callable[[], bool], what: str) -> None:
    """Skip time (retry backoff) until `done()` holds."""
    for _ in range(200):
        if done():
            return
        await env.sleep(30)
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def started(env: WorkflowEnvironment, fake: FakeAlerts, **kw: object) -> tuple[Worker, WorkflowHandle]:
    queue = f"alerts-{uuid.uuid4().hex[:8]}"
    worker = Worker(env.client, task_queue=queue, workflows=[AdminAlertDelivery], activities=fake.activities())
    await worker.__aenter__()
    handle = await env.client.start_workflow(
        AdminAlertDelivery.run, AlertDeliveryInput(organization_id="acme", **kw), id=f"osi-alerts-{queue}",
        task_queue=queue, start_signal=WAKE_SIGNAL)
    return worker, handle


async def test_a_retried_route_is_delivered_and_a_dead_one_given_up_without_blocking_others(env) -> None:
    def flaky(job: AlertJob, attempt: int) -> None:
        if job.route_id == "dead" or attempt < 3:
            raise temporary(f"webhook answered HTTP 503 ({job.route_id})")

    fake = FakeAlerts(jobs=[webhook_job(1), webhook_job(1, "dead"), slack_job(1)], webhook=flaky)
    worker, handle = await started(env, fake, max_attempts=4, max_interval_seconds=60)
    try:
        await run_until(env, lambda: len(fake.records) == 3, "three outcomes recorded")
        assert fake.records[(1, "slack")].status == "delivered" and fake.attempts[(1, "slack")] == 1
        assert fake.records[(1, "hook")].status == "delivered" and fake.attempts[(1, "hook")] == 3
        dead = fake.records[(1, "dead")]
        assert dead.status == "failed" and fake.attempts[(1, "dead")] == 4  # the policy's attempts, then no more
        assert dead.error == "503: webhook answered HTTP 503 (dead)"
        state = await handle.query(AdminAlertDelivery.get_state)
        assert (state.delivered, state.failed, state.in_flight) == (2, 1, 0)
    finally:
        await handle.terminate()
        await worker.__aexit__(None, None, None)


async def test_a_permanent_refusal_is_not_retried(env) -> None:
    def archived(post: PostMessageInput, attempt: int) -> None:
        raise permanent("is_archived")

    fake = FakeAlerts(jobs=[slack_job(7)], slack=archived)
    worker, handle = await started(env, fake)
    try:
        await run_until(env, lambda: (7, "slack") in fake.records, "the refusal recorded")
        assert fake.records[(7, "slack")].status == "failed" and fake.attempts[(7, "slack")] == 1
        assert fake.records[(7, "slack")].error == "is_archived: is_archived"
    finally:
        await handle.terminate()
        await worker.__aexit__(None, None, None)


async def test_the_wake_signal_delivers_new_alerts_and_the_run_continues_as_new(env) -> None:
    fake = FakeAlerts(jobs=[webhook_job(1)])
    worker, handle = await started(env, fake, continue_after=2)
    try:
        await run_until(env, lambda: (1, "hook") in fake.records, "the first alert")
        first_run = (await handle.describe()).run_id
        # Idle: no timer runs; a new alert is delivered only once the signal says so.
        fake.jobs += [webhook_job(2), webhook_job(3)]
        await handle.signal(WAKE_SIGNAL)
        await run_until(env, lambda: len(fake.records) == 3, "the woken alerts")
        # Two deliveries in the first run: it continued as new with its totals, and still answers wakes.
        fake.jobs.append(slack_job(4))
        await handle.signal(WAKE_SIGNAL)
        await run_until(env, lambda: (4, "slack") in fake.records, "an alert after continue-as-new")
        assert (await handle.describe()).run_id != first_run
        state = await handle.query(AdminAlertDelivery.get_state)
        assert (state.delivered, state.failed) == (4, 0)
    finally:
        await handle.terminate()
        await worker.__aexit__(None, None, None)
