"""The echo provider's workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tests.echo_provider.plugin import PingInput, PingResult


@workflow.defn(name="EchoWorkflow")
class EchoWorkflow:
    @workflow.run
    async def run(self, inp: PingInput) -> PingResult:
        return await workflow.execute_activity("echo.ping", inp, result_type=PingResult,
                                               start_to_close_timeout=timedelta(seconds=30))
