"""Slack secrets (bot and refresh tokens, client secret, signing secret) never leak: store, logs, histories."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowFailureError

from activities.slack.models import (
    SendSlackMessageInput,
    SendSlackMessageResult,
    SlackApprovalInput,
    SlackApprovalResult,
)
from activities.slack.seed import click as click_button
from activities.slack.seed import create_workspace, ensure_app, install_via_gateway, wait_for_message
from core.connections import masked_credentials
from tests.helpers import dump_store
from tests.history import history_texts


async def test_slack_secrets_never_leak(client, worker, runtime, sandbox, gateway, task_queue, caplog, stack):
    caplog.set_level(logging.DEBUG)
    await ensure_app(runtime, sandbox.url, gateway)
    ws = await create_workspace(sandbox.url, users={"ann": {}}, channels={"general": {"members": ["ann"]},
                                                                         "old": {"is_archived": True}})
    org = f"org_{uuid.uuid4().hex[:10]}"
    assert (await install_via_gateway(gateway, org, "default", ws.team_id)).status_code == 200
    conn = runtime.store.find_connection(org, "SLACK", "default")
    path = runtime.credentials_path(conn)
    first = await runtime.vault.read(path, use_cache=False)
    # Force a rotation so old and new tokens both exist somewhere they could leak from.
    await runtime.vault.write(path, first.model_copy(update={"expires_at": datetime.now(UTC) + timedelta(seconds=5)}))
    ids = [f"leak-{uuid.uuid4().hex}" for _ in range(3)]
    await client.execute_workflow("SendSlackMessage", SendSlackMessageInput(
        organization_id=org, channel=ws.channels["general"], message="hello"), id=ids[0], task_queue=task_queue,
        result_type=SendSlackMessageResult)
    # Only the administrators hear of this one: the workflow ends Failed (its error details carry the result).
    with pytest.raises(WorkflowFailureError):
        await client.execute_workflow("SendSlackMessage", SendSlackMessageInput(
            organization_id=org, channel=ws.channels["old"], message="fails", fallback=[{"kind": "admin"}]),
            id=ids[1], task_queue=task_queue, result_type=SendSlackMessageResult)
    handle = await client.start_workflow("SlackApproval", SlackApprovalInput(
        organization_id=org, channel=ws.channels["general"], title="ok?", approvers=[ws.users["ann"]]),
        id=ids[2], task_queue=task_queue, result_type=SlackApprovalResult)
    msg = await wait_for_message(sandbox.url, ws.team_id, ws.channels["general"], f"osi:{ids[2]}")
    await click_button(sandbox.url, ws.team_id, ws.users["ann"], ws.channels["general"], msg["ts"], "osi.approve")
    assert (await handle.result()).decision == "approved"
    second = await runtime.vault.read(path, use_cache=False)
    assert second.access_token.get_secret_value() != first.access_token.get_secret_value()  # rotated

    app = await runtime.vault.read_app("slack")
    secrets = [first.access_token.get_secret_value(), first.refresh_token.get_secret_value(),
               second.access_token.get_secret_value(), second.refresh_token.get_secret_value(),
               app.client_secret.get_secret_value(), app.signing_secret.get_secret_value()]
    haystacks = {"store": dump_store(runtime), "logs": caplog.text,
                 "masked": repr(await masked_credentials(runtime, conn))}
    for wid in ids:
        raw, decoded = await history_texts(client, wid)
        haystacks[f"history:{wid}"] = raw + decoded
    for log_file in stack.data_dir.glob("*.log"):
        haystacks[log_file.name] = log_file.read_text(errors="replace")
    for where, hay in haystacks.items():
        for i, secret in enumerate(secrets):
            assert secret not in hay, f"secret #{i} leaked into {where}"
