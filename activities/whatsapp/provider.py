"""The WhatsApp Cloud API as the pipeline sees it: facts, settings section, classifier, auth header."""

from __future__ import annotations

from activities.whatsapp.errors import classify
from activities.whatsapp.settings import WhatsAppSettings
from activities.whatsapp.spec import SPEC
from core.plugin import Provider
from vault.credentials import BearerTokenCredentials, Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    if not isinstance(creds, BearerTokenCredentials):
        raise TypeError("WhatsApp connections use a bearer (system user) token")
    return {"Authorization": f"Bearer {creds.token.get_secret_value()}"}


PROVIDER = Provider(spec=SPEC, settings=WhatsAppSettings, classify=classify, auth_headers=auth_headers)
