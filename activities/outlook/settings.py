"""Outlook's settings section (`OSI_OUTLOOK_…`): Graph base URL, Entra authority, per-mailbox limits, scopes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AliasChoices, Field

from core.settings import ApiSettings, section_config


class OutlookSettings(ApiSettings):
    model_config = section_config("OSI_OUTLOOK_")
    section_name: ClassVar[str] = "outlook"

    base_url: str = Field(default="https://graph.microsoft.com/v1.0/", validation_alias=AliasChoices(
        "OSI_OUTLOOK_BASE_URL", "OSI_GRAPH_BASE_URL", "base_url"))
    entra_authority_host: str = Field(default="https://login.microsoftonline.com", validation_alias=AliasChoices(
        "OSI_OUTLOOK_ENTRA_AUTHORITY_HOST", "OSI_ENTRA_AUTHORITY_HOST", "entra_authority_host"))
    # MSAL only accepts an https authority. Locally the Entra fake is served over http, so MSAL's own
    # HTTP client is replaced by one that sends requests for `entra_authority_host` to this base URL
    # instead (e.g. http://127.0.0.1:8099/entra). Unset in production.
    entra_http_route: str | None = Field(default=None, validation_alias=AliasChoices(
        "OSI_OUTLOOK_ENTRA_HTTP_ROUTE", "OSI_ENTRA_HTTP_ROUTE", "entra_http_route"))
    # Graph limits per app and mailbox: 10,000 requests per 10 minutes, 4 concurrent.
    mailbox_requests_per_10_minutes: int = Field(default=10_000, ge=1)
    mailbox_concurrency: int = Field(default=4, ge=1)
    scopes: str = "Calendars.ReadWrite,User.Read"

    @classmethod
    def sandbox_overrides(cls, sandbox_url: str) -> dict[str, Any]:
        return {"base_url": f"{sandbox_url}/graph/v1.0/", "entra_http_route": f"{sandbox_url}/entra"}
