"""Google Calendar v3 facts as data: auth, base URL, documented quotas."""

from __future__ import annotations

from core.plugin import ProviderSpec, RateLimitSpec

USER_QUOTA_PER_MINUTE = 600
PROJECT_QUOTA_PER_MINUTE = 10_000
QUOTA_PERIOD_SECONDS = 60.0
# Google counts a request when it arrives, we when we send it: the window is widened by this much so
# network jitter between the two clocks never lets one request too many into Google's window.
LIMIT_MARGIN_SECONDS = 0.25
# Writes need calendar or calendar.events; freeBusy and calendars.get need calendar or calendar.readonly.
SCOPES = ("https://www.googleapis.com/auth/calendar.events", "https://www.googleapis.com/auth/calendar.readonly")
MAX_FREEBUSY_CALENDARS = 50  # calendarExpansionMax
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex: the characters a client-supplied id may use

SPEC = ProviderSpec(
    name="google_calendar",
    integration_type="GOOGLE_CALENDAR",
    auth_kind="oauth2",
    scopes=SCOPES,
    rate_limits={
        # Both are sliding per-minute windows (developers.google.com/workspace/calendar/api/guides/quota).
        "user": RateLimitSpec("google_calendar.user", USER_QUOTA_PER_MINUTE, QUOTA_PERIOD_SECONDS,
                              "requests per minute per user per project", margin=LIMIT_MARGIN_SECONDS),
        "project": RateLimitSpec("google_calendar.project", PROJECT_QUOTA_PER_MINUTE, QUOTA_PERIOD_SECONDS,
                                 "requests per minute per project (configurable)", margin=LIMIT_MARGIN_SECONDS),
    },
    secret_settings=("access_token", "refresh_token"),
    install_path="/oauth/google_calendar/install",
)
