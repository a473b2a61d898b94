"""BulkSendWhatsAppTemplate: one template to thousands of recipients with per-recipient parameters.

Batches go to an activity that sends concurrently within the number's limits. Nobody is abandoned: a temporary
failure (provider 5xx or outage, rate limit, lost answer) hands the batch's unaccepted recipients back as
pending, and they are retried after a jittered backoff (or Retry-After) until the send's deadline; each
recipient is an intent in the store, so an accepted one is never sent again. Pause, resume and cancel are
signals (the batches in flight finish, nothing new starts); the portfolio's 24 h messaging limit holds
recipients, who are resumed when a slot frees.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.whatsapp.activities import WhatsAppActivities
    from activities.whatsapp.models import (
        BulkBatchInput,
        BulkBatchResult,
        BulkOutcome,
        BulkProgress,
        BulkSendWhatsAppTemplateInput,
        BulkSendWhatsAppTemplateResult,
    )
    from core.errors import ErrorClass, error_from_details
    from core.policies import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, BATCH
    from core.visibility import raise_if_all_failed

# The input's limits (recipients, batch size, concurrency, parallel batches, language) are model constraints
# (activities/whatsapp/models.py): a refused input fails as PermanentError invalid_input before `run`.
KEEP_FAILURES = 200
MIN_WAIT = timedelta(seconds=1)
# Histories written before it sent held recipients in batches of their own (settled at the deadline like the rest).
HOLDS_OUTLIVE_DEADLINE = "bulk-holds-outlive-deadline"


@workflow.defn(name="BulkSendWhatsAppTemplate")
class BulkSendWhatsAppTemplate:
    def __init__(self) -> None:
        self.progress = BulkProgress(total=0)
        self.paused = False
        self.cancel_requested = False
        self.failures: list[BulkOutcome] = []
        self.held: set[int] = set()  # recipients waiting for a messaging-limit slot (the rest of `waiting` pend)
        self.released: set[int] = set()  # held recipients whose slot freed after the deadline, not yet sent
        self.deadline = datetime.max.replace(tzinfo=UTC)

    @workflow.signal(name="pause")
    def pause(self) -> None:
        """Finish the batches in flight, start no new one until resumed."""
        self.paused = True

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self.paused = False

    @workflow.signal(name="cancel")
    def cancel(self) -> None:
        """Finish the batches in flight and stop; the rest is counted as cancelled."""
        self.cancel_requested = True

    @workflow.query(name="progress")
    def get_progress(self) -> BulkProgress:
        return self.progress

    @workflow.run
    async def run(self, inp: BulkSendWhatsAppTemplateInput) -> BulkSendWhatsAppTemplateResult:
        total = len(inp.recipients)
        self.progress = BulkProgress(total=total)
        key = inp.idempotency_key or workflow.info().workflow_id
        within = timedelta(seconds=inp.deliver_within) if inp.deliver_within else BATCH.deadline
        deadline = self.deadline = workflow.now() + within
        queue = [list(range(i, min(i + inp.batch_size, total))) for i in range(0, total, inp.batch_size)]
        waiting: dict[int, datetime] = {}  # held (messaging limit) or pending (temporary failure): due time
        pauses = 0  # consecutive batches that came back with pending recipients: the backoff's exponent
        running: dict[asyncio.Task[BulkBatchResult], list[int]] = {}
        error: ApplicationError | None = None
        while True:
            if self.cancel_requested or error is not None:
                for batch in queue:
                    self._stop(batch, error)
                queue.clear()
            while queue and not self.paused and len(running) < inp.max_parallel_batches:
                indices = queue.pop(0)
                # Past the deadline a batch only settles — unless it resumes a messaging-limit hold: the limit holds
                # a send, it never fails one (a hold can outlast the default 12 h deadline: the window is 24 h).
                settle_only = workflow.now() >= deadline and not self.released.issuperset(indices)
                task = asyncio.ensure_future(workflow.execute_activity_method(
                    WhatsAppActivities.send_template_batch,
                    BulkBatchInput(organization_id=inp.organization_id, connection=inp.connection,
                                   template_name=inp.template_name, language=inp.language,
                                   recipients=[inp.recipients[i] for i in indices], indices=indices,
                                   concurrency=inp.concurrency, idempotency_key=key,
                                   deadline=deadline.isoformat(), settle_only=settle_only),
                    **BATCH.kwargs(within)))
                running[task] = indices
            self._set_state(queue, waiting, running)
            if running:
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    indices = running.pop(task)
                    try:
                        res = task.result()
                    except ActivityError as err:
                        error = self._batch_failed(err, indices) or error
                        continue
                    pending = self._count(res, waiting)
                    # Backoff grows only while nothing gets through; any accepted send starts it over.
                    pauses = 0 if any(o.status == "sent" for o in res.outcomes) else pauses + 1
                    if pending:
                        self._wait_pending(pending, res.retry_after, max(1, pauses), waiting)
                continue
            if queue and self.paused and not self.cancel_requested:
                await workflow.wait_condition(lambda: not self.paused or self.cancel_requested)
                continue
            if waiting and not self.cancel_requested and error is None:
                await self._sleep_until(min(waiting.values()))
                now = workflow.now()
                due = sorted(i for i, at in waiting.items() if at <= now)
                groups = [due]
                if now >= deadline and self.held.intersection(due) and workflow.patched(HOLDS_OUTLIVE_DEADLINE):
                    released = [i for i in due if i in self.held]
                    self.released.update(released)
                    groups = [released, [i for i in due if i not in self.held]]
                for i in due:
                    del waiting[i]
                    self.held.discard(i)
                self.progress.held = len(self.held)
                self.progress.pending = len(waiting) - len(self.held)
                queue = [g[i:i + inp.batch_size] for g in groups for i in range(0, len(g), inp.batch_size)]
                continue
            break
        # Recipients still waiting when the send stops (cancel, configuration error) are counted, not lost.
        if waiting:
            self._stop(sorted(waiting), error)
            waiting.clear()
        self.progress.held = self.progress.pending = 0
        self.progress.state = "failed" if error else ("cancelled" if self.cancel_requested else "completed")
        result = BulkSendWhatsAppTemplateResult(**self.progress.model_dump(), failures=self.failures)
        if error is not None:
            raise ApplicationError(error.message, result.model_dump(mode="json"), type=error.type,
                                   non_retryable=True)
        raise_if_all_failed(reached=result.sent, failed=result.failed,
                            errors=[{"code": f.code, "message": f"recipient #{f.index}: {f.code}"}
                                    for f in self.failures],
                            what="BulkSendWhatsAppTemplate: no recipient reached", result=result)
        return result

    # ---- bookkeeping ---------------------------------------------------------------------------------
    def _count(self, res: BulkBatchResult, waiting: dict[int, datetime]) -> list[int]:
        """Count final outcomes; return the pending recipients (held ones go to `waiting` here)."""
        p = self.progress
        pending: list[int] = []
        for o in res.outcomes:
            self.held.discard(o.index)
            self.released.discard(o.index)
            if o.status == "sent":
                p.sent += 1
                p.resent += int(o.resent)  # a bool from histories written before it became a count
                if o.message_status:
                    p.sent_by_provider_status[o.message_status] = p.sent_by_provider_status.get(o.message_status, 0) + 1
            elif o.status == "failed":
                self._fail(o)
            elif o.status == "skipped":
                p.skipped += 1
                reason = o.code or "unknown"
                p.skipped_by_reason[reason] = p.skipped_by_reason.get(reason, 0) + 1
            elif o.status == "held" and o.resume_at:
                self.held.add(o.index)
                waiting[o.index] = datetime.fromisoformat(o.resume_at)
            elif o.status == "pending":
                pending.append(o.index)
        p.held = len(self.held)
        p.pending = sum(1 for i in waiting if i not in self.held) + len(pending)
        if res.error is not None:
            p.error = {k: v for k, v in res.error.items() if k != "details"}
        return pending

    def _fail(self, o: BulkOutcome) -> None:
        p = self.progress
        p.failed += 1
        code = o.code or "unknown"
        p.failed_by_error[code] = p.failed_by_error.get(code, 0) + 1
        if len(self.failures) < KEEP_FAILURES:
            self.failures.append(o)

    def _wait_pending(self, pending: list[int], retry_after: float | None, pauses: int,
                      waiting: dict[int, datetime]) -> None:
        """Retry after the provider's hint, else exponential backoff with full jitter (deterministic in replay),
        capped so a recovered provider is back in use within a minute."""
        if retry_after is None:
            ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, pauses - 1))
            retry_after = workflow.random().uniform(0.0, ceiling)
        due = workflow.now() + max(timedelta(seconds=retry_after), MIN_WAIT)
        due = min(due, max(self.deadline, workflow.now()))  # at the deadline their batch only settles
        for i in pending:
            waiting[i] = due

    def _batch_failed(self, err: ActivityError, indices: list[int]) -> ApplicationError | None:
        """A batch the activity gave up on: a configuration error stops the send (its partial outcomes counted,
        the rest failed with that cause); anything else is retried like a pause."""
        details = error_from_details(err) or {"message": str(err)}
        self.progress.error = {k: v for k, v in details.items() if k != "details"}
        partial = [BulkOutcome.model_validate(o) for o in (details.get("details") or {}).get("outcomes") or []]
        self._count(BulkBatchResult(outcomes=partial), {})
        counted = {o.index for o in partial if o.status != "pending"}
        code = str(details.get("code") or details.get("error_class") or "error")
        for i in indices:
            if i not in counted:
                self._fail(BulkOutcome(index=i, status="failed", code=code))
        return ApplicationError(f"bulk send stopped: {details.get('message')}", details,
                                type=str(details.get("error_class") or ErrorClass.PERMANENT.value),
                                non_retryable=True)

    def _stop(self, indices: list[int], error: ApplicationError | None) -> None:
        """Recipients never attempted because the send stopped: cancelled, or failed with the stopping cause."""
        if error is None:
            self.progress.cancelled += len(indices)
            return
        code = str((error.details[0] if error.details else {}).get("code") or error.type)
        for i in indices:
            self._fail(BulkOutcome(index=i, status="failed", code=code))

    async def _sleep_until(self, at: datetime) -> None:
        try:
            await workflow.wait_condition(lambda: self.cancel_requested,
                                          timeout=max(at - workflow.now(), MIN_WAIT))
        except TimeoutError:
            pass

    def _set_state(self, queue: list[list[int]], waiting: dict[int, datetime],
                   running: dict[asyncio.Task[BulkBatchResult], list[int]]) -> None:
        if self.cancel_requested:
            self.progress.state = "cancelling"
        elif self.paused and (queue or waiting):
            # "paused" only once the batches in flight are done: from then on nothing reaches Meta.
            self.progress.state = "pausing" if running else "paused"
        elif not queue and not running and waiting:
            self.progress.state = "retrying" if self.progress.pending else "held"
        else:
            self.progress.state = "running"
