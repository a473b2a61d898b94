"""The WhatsApp plugin's parts, as the registry sees them."""

from __future__ import annotations

from activities.spec import Plugin
from activities.whatsapp import errors, models, webhooks
from activities.whatsapp.activities import WhatsAppActivities, test_connection
from activities.whatsapp.client import WhatsAppClient
from activities.whatsapp.spec import SPEC
from vault.credentials import BearerTokenCredentials, Credentials


def auth_headers(creds: Credentials) -> dict[str, str]:
    if not isinstance(creds, BearerTokenCredentials):
        raise TypeError("WhatsApp connections use a bearer (system user) token")
    return {"Authorization": f"Bearer {creds.token.get_secret_value()}"}


def _workflows() -> list[type]:
    from workflows.whatsapp import SendWhatsAppMessage
    from workflows.whatsapp_bulk import BulkSendWhatsAppTemplate
    from workflows.whatsapp_conversation import WhatsAppConversation

    return [SendWhatsAppMessage, WhatsAppConversation, BulkSendWhatsAppTemplate]


PLUGIN = Plugin(
    spec=SPEC,
    models=models,
    client=WhatsAppClient,
    classify=errors.classify,
    auth_headers=auth_headers,
    activities=lambda rt: WhatsAppActivities(rt).all(),
    workflows=_workflows(),
    test_connection=test_connection,
    webhook_verifier=webhooks.verify_signature,
    webhook_parser=webhooks.parse,
)
