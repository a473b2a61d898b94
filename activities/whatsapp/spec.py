"""WhatsApp Cloud API facts as data: auth, base URL, documented limits."""

from __future__ import annotations

from activities.spec import ProviderSpec, RateLimitSpec
from store.models import IntegrationType

DEFAULT_THROUGHPUT_MPS = 80
PAIR_LIMIT_PERIOD_SECONDS = 6.0

SPEC = ProviderSpec(
    name="whatsapp",
    integration_type=IntegrationType.WHATSAPP_BUSINESS,
    auth_kind="bearer",
    base_url_setting="whatsapp_base_url",
    scopes=("whatsapp_business_messaging", "whatsapp_business_management"),
    rate_limits={
        # Per business phone number; 20 for coexistence numbers, up to 1,000 after upgrade.
        "throughput": RateLimitSpec("phone_number", DEFAULT_THROUGHPUT_MPS, 1.0, "messages per second per number"),
        # About one message per 6 s from one business number to the same customer.
        "pair": RateLimitSpec("pair", 1, PAIR_LIMIT_PERIOD_SECONDS, "messages per 6 s per (number, customer)"),
    },
    has_webhooks=True,
    secret_settings=("token", "app_secret", "verify_token"),
    required_settings=("phone_number_id",),
    docs="https://developers.facebook.com/documentation/business-messaging/whatsapp",
)
