"""The Google Calendar plugin's parts, as the registry sees them."""

from __future__ import annotations

from activities.google_calendar import auth, errors, models
from activities.google_calendar.activities import GoogleCalendarActivities, revoke, test_connection
from activities.google_calendar.client import GoogleCalendarClient
from activities.google_calendar.spec import SPEC
from activities.spec import Plugin
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    """User OAuth tokens; service accounts mint their tokens in the client (domain-wide delegation)."""
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Google Calendar pipeline auth takes OAuth2 user credentials")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


def _workflows() -> list[type]:
    from workflows.calendar import CALENDAR_WORKFLOWS

    return list(CALENDAR_WORKFLOWS)


PLUGIN = Plugin(
    spec=SPEC,
    models=models,
    client=GoogleCalendarClient,
    classify=errors.classify,
    auth_headers=auth_headers,
    activities=lambda rt: GoogleCalendarActivities(rt).all(),
    workflows=_workflows(),
    test_connection=test_connection,
    refresh=auth.refresh,
    revoke=revoke,
)
