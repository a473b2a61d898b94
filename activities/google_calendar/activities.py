"""Google Calendar Temporal activities (`google_calendar.*`), each one Action through the shared pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.calendar.service import CalendarService
from activities.google_calendar.client import GoogleCalendarClient
from activities.google_calendar.models import (
    AvailabilityInput,
    AvailabilityResult,
    CalendarEvent,
    ConflictCheckInput,
    ConflictCheckResult,
    CreateEventInput,
    CreateEventsInput,
    CreateEventsResult,
    DeleteEventInput,
    DeleteResult,
    EventList,
    EventResult,
    GetEventInput,
    InstancesInput,
    ListEventsInput,
    SyncInput,
    UpdateEventInput,
)

if TYPE_CHECKING:
    from activities.pipeline import Action
    from activities.runtime import Runtime


class GoogleCalendarActivities:
    """Activities bound to the worker's runtime."""

    def __init__(self, rt: Runtime) -> None:
        from activities.google_calendar.plugin import PLUGIN

        self.rt = rt
        self.plugin = PLUGIN
        self.svc = CalendarService(rt, PLUGIN, GoogleCalendarClient)

    @activity.defn(name="google_calendar.create_event")
    async def create_event(self, inp: CreateEventInput) -> EventResult:
        """events.insert with a client-supplied id derived from the idempotency key (409 → the existing event)."""
        return await self.svc.create(inp)

    @activity.defn(name="google_calendar.create_events")
    async def create_events(self, inp: CreateEventsInput) -> CreateEventsResult:
        """Up to 100 events in one calendar: concurrent events.insert with client-supplied ids (no duplicates)."""
        return await self.svc.create_many(inp)

    @activity.defn(name="google_calendar.get_event")
    async def get_event(self, inp: GetEventInput) -> CalendarEvent:
        return await self.svc.get(inp)

    @activity.defn(name="google_calendar.update_event")
    async def update_event(self, inp: UpdateEventInput) -> EventResult:
        """events.patch with If-Match (412 → etag_mismatch) and sendUpdates."""
        return await self.svc.update(inp)

    @activity.defn(name="google_calendar.delete_event")
    async def delete_event(self, inp: DeleteEventInput) -> DeleteResult:
        """events.delete; 410 deleted / 404 on a repeated delete is success."""
        return await self.svc.delete(inp)

    @activity.defn(name="google_calendar.list_events")
    async def list_events(self, inp: ListEventsInput) -> EventList:
        """events.list in a window with singleEvents=true (series expanded), ordered by start."""
        return await self.svc.list_window(inp)

    @activity.defn(name="google_calendar.list_instances")
    async def list_instances(self, inp: InstancesInput) -> EventList:
        return await self.svc.instances(inp)

    @activity.defn(name="google_calendar.find_availability")
    async def find_availability(self, inp: AvailabilityInput) -> AvailabilityResult:
        """freebusy.query for the participants, then free slots within their working hours."""
        return await self.svc.find_availability(inp)

    @activity.defn(name="google_calendar.check_conflicts")
    async def check_conflicts(self, inp: ConflictCheckInput) -> ConflictCheckResult:
        return await self.svc.check_conflicts(inp)

    @activity.defn(name="google_calendar.sync_events")
    async def sync_events(self, inp: SyncInput) -> EventList:
        """Incremental sync; a 410 fullSyncRequired restarts from scratch and says so (`full_sync`)."""
        async with self.rt.action(self.plugin, inp.organization_id, inp.connection, "google_calendar.sync_events",
                                  target=inp.calendar_id) as act:
            client = GoogleCalendarClient(act)
            return await client.sync(client.default_calendar(inp.calendar_id), inp.sync_token, inp.max_pages)

    def all(self) -> list[Any]:
        return [self.create_event, self.create_events, self.get_event, self.update_event, self.delete_event,
                self.list_events, self.list_instances, self.find_availability, self.check_conflicts, self.sync_events]


async def revoke(act: Action) -> dict[str, Any]:
    """Google's revoke endpoint: revoking the refresh token ends the grant and its access tokens.
    Service accounts have no grant to revoke (their keys are managed in Google Cloud)."""
    from activities.errors import IntegrationError
    from vault.credentials import OAuth2Credentials

    creds = await act.rt.vault.read(act.rt.credentials_path(act.connection), use_cache=False)
    if not isinstance(creds, OAuth2Credentials):
        return {"revoked": False, "note": "service-account keys are revoked in Google Cloud, not here"}
    token = creds.refresh_token or creds.access_token
    try:
        await act.call("POST", act.rt.settings.google_revoke_url, data={"token": token.get_secret_value()},
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
