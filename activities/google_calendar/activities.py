"""Google-only activities (incremental sync), revocation and the connection test, through the shared pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.calendar.model import EventList
from activities.google_calendar.client import GoogleCalendarClient
from activities.google_calendar.models import SyncInput
from activities.google_calendar.provider import PROVIDER
from activities.google_calendar.settings import GoogleCalendarSettings
from core.errors import IntegrationError
from vault.credentials import OAuth2Credentials

if TYPE_CHECKING:
    from core.pipeline import Action
    from core.runtime import Runtime


class GoogleCalendarActivities:
    """Google-only activities (the shared ones are `calendar.*`), bound to the worker's runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="google_calendar.sync_events")
    async def sync_events(self, inp: SyncInput) -> EventList:
        """Incremental sync; a 410 fullSyncRequired restarts from scratch and says so (`full_sync`)."""
        async with self.rt.action(PROVIDER, inp.organization_id, inp.connection, "google_calendar.sync_events",
                                  target=inp.calendar_id) as act:
            client = GoogleCalendarClient(act)
            return await client.sync(client.default_calendar(inp.calendar_id), inp.sync_token, inp.max_pages)

    def all(self) -> list[Any]:
        return [self.sync_events]


async def revoke(act: Action) -> dict[str, Any]:
    """Google's revoke endpoint: revoking the refresh token ends the grant and its access tokens.
    Service accounts have no grant to revoke (their keys are managed in Google Cloud)."""
    creds = await act.rt.vault.read(act.rt.credentials_path(act.connection), use_cache=False)
    if not isinstance(creds, OAuth2Credentials):
        return {"revoked": False, "note": "service-account keys are revoked in Google Cloud, not here"}
    token = creds.refresh_token or creds.access_token
    try:
        await act.call("POST", act.rt.section(GoogleCalendarSettings).revoke_url,
                       data={"token": token.get_secret_value()},
                       authenticate=False)
    except IntegrationError as err:
        if err.details.get("status") == 400:  # invalid_token: already revoked or expired
            return {"revoked": True, "note": "the grant was already revoked or expired"}
        raise
    return {"revoked": True}


async def test_connection(act: Action) -> dict[str, Any]:
    """A real call: read the primary calendar (its id is the account's email) and its time zone."""
    data = await GoogleCalendarClient(act).primary_calendar()
    problems = [] if data.get("id") else ["the primary calendar has no id"]
    return {"ok": not problems, "problems": problems,
            "calendar": {"id": data.get("id"), "timeZone": data.get("timeZone"), "summary": data.get("summary")}}
