"""The Slack Web API as the pipeline sees it: facts, settings section, classifier, bot token, rotation."""

from __future__ import annotations

from activities.slack.errors import classify
from activities.slack.oauth import refresh
from activities.slack.settings import SlackSettings
from activities.slack.spec import SPEC
from core.plugin import Provider
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Slack connections use an OAuth bot token")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


PROVIDER = Provider(spec=SPEC, settings=SlackSettings, classify=classify, auth_headers=auth_headers,
                    refresh=refresh)
