"""Google Calendar's settings section (`OSI_GOOGLE_CALENDAR_…`): API, OAuth and revoke URLs, quotas, scopes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field

from core.settings import ApiSettings, section_config


def _alias(field: str, legacy: str) -> AliasChoices:
    return AliasChoices(f"OSI_GOOGLE_CALENDAR_{field.upper()}", legacy, field)


class GoogleCalendarSettings(ApiSettings):
    model_config = section_config("OSI_GOOGLE_CALENDAR_")
    section_name: ClassVar[str] = "google_calendar"

    base_url: str = "https://www.googleapis.com/calendar/v3/"
    token_url: str = Field(default="https://oauth2.googleapis.com/token",
                           validation_alias=_alias("token_url", "OSI_GOOGLE_TOKEN_URL"))
    revoke_url: str = Field(default="https://oauth2.googleapis.com/revoke",
                            validation_alias=_alias("revoke_url", "OSI_GOOGLE_REVOKE_URL"))
    authorize_url: str = Field(default="https://accounts.google.com/o/oauth2/v2/auth",
                               validation_alias=_alias("authorize_url", "OSI_GOOGLE_AUTHORIZE_URL"))
    # Quotas (per minute, sliding): 600 per user per project; the project limit is per Cloud project and
    # can be raised in the console, so it is configurable.
    user_quota_per_minute: int = Field(default=600, ge=1)
    project_quota_per_minute: int = Field(default=10_000, ge=1)
    # Google answers 404 during propagation delays ("use exponential backoff"): attempts before it is final.
    not_found_attempts: int = Field(default=3, ge=1)
    scopes: str = ("https://www.googleapis.com/auth/calendar.events,"
                   "https://www.googleapis.com/auth/calendar.readonly")

    @classmethod
    def sandbox_overrides(cls, sandbox_url: str) -> dict[str, Any]:
        return {"base_url": f"{sandbox_url}/google/calendar/v3/", "token_url": f"{sandbox_url}/google/token",
                "revoke_url": f"{sandbox_url}/google/revoke", "authorize_url": f"{sandbox_url}/google/authorize"}
