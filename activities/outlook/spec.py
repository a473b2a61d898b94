"""Microsoft Graph (Outlook calendar) facts as data: auth, base URL, documented per-mailbox limits."""

from __future__ import annotations

from core.plugin import ProviderSpec, RateLimitSpec

MAILBOX_REQUESTS = 10_000
MAILBOX_PERIOD_SECONDS = 600.0
MAILBOX_CONCURRENCY = 4
# Graph counts a request on arrival, we on sending: the window is widened against network jitter.
LIMIT_MARGIN_SECONDS = 0.25
MAX_SCHEDULES = 20  # getSchedule: up to 20 entities per call
MAX_SCHEDULE_DAYS = 62  # getSchedule: the period "must be less than 62 days"
MAX_ATTENDEES = 500
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
# MSAL adds these itself and refuses them in a scope list.
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
# AADSTS codes after which only a new sign-in helps (reference-error-codes.md).
REAUTH_AADSTS = {70008, 700082, 50173, 65001, 50076, 50079, 70043, 700084}

SPEC = ProviderSpec(
    name="outlook",
    integration_type="OUTLOOK_CALENDAR",
    auth_kind="oauth2",
    scopes=("Calendars.ReadWrite", "User.Read"),
    rate_limits={
        # "applies limits to each app ID and mailbox combination" (Graph throttling limits, Outlook).
        "mailbox": RateLimitSpec("outlook.mailbox", MAILBOX_REQUESTS, MAILBOX_PERIOD_SECONDS,
                                 "requests per 10 minutes per app and mailbox", margin=LIMIT_MARGIN_SECONDS,
                                 max_concurrent=MAILBOX_CONCURRENCY),
    },
    secret_settings=("access_token", "refresh_token"),
    install_path="/oauth/outlook/install",
)
