"""BulkSendWhatsAppTemplate: one template to thousands of recipients with per-recipient parameters.

Batches go to an activity that sends concurrently within the number's limits and heartbeats its
progress. Pause, resume and cancel are signals (the current batches finish, nothing new starts); the
portfolio's 24 h messaging limit holds recipients, who are resumed when a slot frees, never dropped.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

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
    from core.policies import BATCH

# The input's limits (recipients, batch size, concurrency, parallel batches, language) are model constraints
# (activities/whatsapp/models.py): a refused input fails as PermanentError invalid_input before `run`.
KEEP_FAILURES = 200
MIN_HOLD = timedelta(seconds=1)


@workflow.defn(name="BulkSendWhatsAppTemplate")
class BulkSendWhatsAppTemplate:
    def __init__(self) -> None:
        self.progress = BulkProgress(total=0)
        self.paused = False
        self.cancel_requested = False
        self.failures: list[BulkOutcome] = []

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
        queue = [list(range(i, min(i + inp.batch_size, total))) for i in range(0, total, inp.batch_size)]
        held: dict[int, datetime] = {}
        running: dict[asyncio.Task[BulkBatchResult], list[int]] = {}
        error: ApplicationError | None = None
        while True:
            if self.cancel_requested or error is not None:
                self.progress.cancelled += sum(len(q) for q in queue)  # never attempted
                queue.clear()
            while queue and not self.paused and len(running) < inp.max_parallel_batches:
                indices = queue.pop(0)
                task = asyncio.ensure_future(workflow.execute_activity_method(
                    WhatsAppActivities.send_template_batch,
                    BulkBatchInput(organization_id=inp.organization_id, connection=inp.connection,
                                   template_name=inp.template_name, language=inp.language,
                                   recipients=[inp.recipients[i] for i in indices], indices=indices,
                                   concurrency=inp.concurrency, idempotency_key=key),
                    **BATCH.kwargs()))
                running[task] = indices
            self._set_state(queue, held, running)
            if running:
                done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    indices = running.pop(task)
                    try:
                        self._count(task.result(), held)
                    except ActivityError as err:
                        details = error_from_details(err) or {"message": str(err)}
                        error = error or ApplicationError(
                            f"bulk send stopped: {details.get('message')}", details,
                            type=str(details.get("error_class") or ErrorClass.PERMANENT.value), non_retryable=True)
                        self.progress.error = {k: v for k, v in details.items() if k != "details"}
                        partial = [BulkOutcome.model_validate(o)
                                   for o in (details.get("details") or {}).get("outcomes") or []]
                        self._count(BulkBatchResult(outcomes=partial), held)
                        counted = {o.index for o in partial}
                        self.progress.cancelled += sum(1 for i in indices if i not in counted)
                continue
            if queue and self.paused and not self.cancel_requested:
                await workflow.wait_condition(lambda: not self.paused or self.cancel_requested)
                continue
            if held and not self.cancel_requested and error is None:
                wait = min(held.values()) - workflow.now()
                try:
                    await workflow.wait_condition(lambda: self.cancel_requested,
                                                  timeout=max(wait, MIN_HOLD))
                except TimeoutError:
                    pass
                now = workflow.now()
                due = sorted(i for i, at in held.items() if at <= now)
                for i in due:
                    del held[i]
                    self.progress.held -= 1
                queue = [due[i:i + inp.batch_size] for i in range(0, len(due), inp.batch_size)]
                continue
            break
        # Held recipients that never got their slot (cancel, fatal error) count as cancelled: the numbers add up.
        if self.cancel_requested or error:
            self.progress.cancelled += len(held)
            self.progress.held -= len(held)
        self.progress.state = "failed" if error else ("cancelled" if self.cancel_requested else "completed")
        result = BulkSendWhatsAppTemplateResult(**self.progress.model_dump(), failures=self.failures)
        if error is not None:
            raise ApplicationError(error.message, result.model_dump(mode="json"), type=error.type,
                                   non_retryable=True)
        return result

    def _count(self, res: BulkBatchResult, held: dict[int, datetime]) -> None:
        p = self.progress
        for o in res.outcomes:
            if o.status == "sent":
                p.sent += 1
                if o.message_status:
                    p.sent_by_provider_status[o.message_status] = p.sent_by_provider_status.get(o.message_status, 0) + 1
            elif o.status == "failed":
                p.failed += 1
                code = o.code or "unknown"
                p.failed_by_error[code] = p.failed_by_error.get(code, 0) + 1
                if len(self.failures) < KEEP_FAILURES:
                    self.failures.append(o)
            elif o.status == "skipped":
                p.skipped += 1
                reason = o.code or "unknown"
                p.skipped_by_reason[reason] = p.skipped_by_reason.get(reason, 0) + 1
            elif o.status == "held" and o.resume_at:
                if o.index not in held:
                    p.held += 1
                held[o.index] = datetime.fromisoformat(o.resume_at)

    def _set_state(self, queue: list[list[int]], held: dict[int, datetime],
                   running: dict[asyncio.Task[BulkBatchResult], list[int]]) -> None:
        if self.cancel_requested:
            self.progress.state = "cancelling"
        elif self.paused and (queue or held):
            # "paused" only once the batches in flight are done: from then on nothing reaches Meta.
            self.progress.state = "pausing" if running else "paused"
        elif not queue and not running and held:
            self.progress.state = "held"
        else:
            self.progress.state = "running"
