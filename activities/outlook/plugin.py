"""The Outlook (Microsoft Graph) plugin's parts, as the registry sees them."""

from __future__ import annotations

from activities.outlook import auth, errors, models
from activities.outlook.activities import OutlookActivities, test_connection
from activities.outlook.client import OutlookCalendarClient
from activities.outlook.spec import SPEC
from activities.spec import Plugin
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    """Delegated tokens; app-only tokens are minted by MSAL in the client (client credentials)."""
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Outlook pipeline auth takes OAuth2 delegated credentials")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


def _workflows() -> list[type]:
    from workflows.calendar import CALENDAR_WORKFLOWS

    return list(CALENDAR_WORKFLOWS)


PLUGIN = Plugin(
    spec=SPEC,
    models=models,
    client=OutlookCalendarClient,
    classify=errors.classify,
    auth_headers=auth_headers,
    activities=lambda rt: OutlookActivities(rt).all(),
    workflows=_workflows(),
    test_connection=test_connection,
    refresh=auth.refresh,
)
