"""The Slack plugin's parts, as the registry sees them."""

from __future__ import annotations

from activities.slack import errors, models, oauth, webhooks
from activities.slack.activities import SlackActivities, revoke, test_connection
from activities.slack.client import SlackClient
from activities.slack.spec import SPEC
from activities.spec import Plugin
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Slack connections use an OAuth bot token")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


def _workflows() -> list[type]:
    from workflows.slack import SendSlackMessage, SlackApproval, SlackStatusCommand

    return [SendSlackMessage, SlackApproval, SlackStatusCommand]


PLUGIN = Plugin(
    spec=SPEC,
    models=models,
    client=SlackClient,
    classify=errors.classify,
    auth_headers=auth_headers,
    activities=lambda rt: SlackActivities(rt).all(),
    workflows=_workflows(),
    test_connection=test_connection,
    refresh=oauth.refresh,
    revoke=revoke,
    webhook_verifier=webhooks.verify_signature,
    webhook_parser=webhooks.parse,
)
