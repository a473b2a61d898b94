"""Microsoft Graph (Outlook) as the pipeline sees it: facts, settings section, classifier, delegated tokens."""

from __future__ import annotations

from activities.outlook.auth import refresh
from activities.outlook.errors import classify
from activities.outlook.settings import OutlookSettings
from activities.outlook.spec import SPEC
from core.plugin import Provider
from vault.credentials import Credentials, OAuth2Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    """Delegated tokens; app-only tokens are minted by MSAL in the client (client credentials)."""
    if not isinstance(creds, OAuth2Credentials):
        raise TypeError("Outlook pipeline auth takes OAuth2 delegated credentials")
    return {"Authorization": f"Bearer {creds.access_token.get_secret_value()}"}


PROVIDER = Provider(spec=SPEC, settings=OutlookSettings, classify=classify, auth_headers=auth_headers,
                    refresh=refresh)
