"""Google Calendar as the pipeline sees it: facts, settings section, classifier, user tokens and refresh."""

from __future__ import annotations

from activities.google_calendar.auth import refresh
from activities.google_calendar.errors import classify
from activities.google_calendar.settings import GoogleCalendarSettings
from activities.google_calendar.spec import SPEC
from core.plugin import Provider
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    """User OAuth tokens; service accounts mint their tokens in the client (domain-wide delegation)."""
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Google Calendar pipeline auth takes OAuth2 user credentials")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


PROVIDER = Provider(spec=SPEC, settings=GoogleCalendarSettings, classify=classify, auth_headers=auth_headers,
                    refresh=refresh)
