"""Calendar demo: schedule a meeting on Google Calendar and on Outlook against the sandbox.

For each provider: a project manager in New York, a developer in Berlin (busy for part of the day) and an
optional client in Tokyo; ScheduleMeeting finds the first slot inside everyone's working hours, creates the
event and sends the invitations; an update then notifies the attendees. The Outlook connection starts with
an expired access token, so the run also shows MSAL refreshing it and the rotated refresh token landing in
Vault. Everything is seeded idempotently (Vault apps, store connections, the fakes' users and mailboxes).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from activities.calendar.model import (
    CalendarActionInput,
    CreateCalendarEventResult,
    EventPatch,
    MeetingAttendee,
    ScheduleMeetingInput,
    ScheduleMeetingResult,
    UpdateCalendarEventInput,
    UpdateCalendarEventResult,
)
from core.connections import add_connection
from core.demo import DemoContext
from core.runtime import Runtime
from vault.client import CredentialsMissing
from vault.credentials import AppSecrets, OAuth2Credentials

GOOGLE_CLIENT_ID = "opensyte-demo.apps.googleusercontent.com"
MS_CLIENT_ID = "0d3m0000-0000-4000-8000-0000000ca1e0"
MS_TENANT = "opensyte-demo"
GOOGLE_SCOPES = ["https://www.googleapis.com/auth/calendar.events",
                 "https://www.googleapis.com/auth/calendar.readonly"]
PEOPLE = {  # role: (email local part, IANA zone)
    "pm": ("pm", "America/New_York"),
    "dev": ("dev", "Europe/Berlin"),
    "client": ("client", "Asia/Tokyo"),
}


def _fp(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


async def _app(rt: Runtime, name: str, client_id: str) -> str:
    """The OAuth app in Vault (kept when present, created once otherwise); returns its secret."""
    try:
        app = await rt.vault.read_app(name)
        if app.client_id and app.client_secret:
            return app.client_secret.get_secret_value()
    except CredentialsMissing:
        pass
    secret = secrets.token_urlsafe(24)
    await asyncio.to_thread(rt.vault.write_app_sync, name, AppSecrets(client_id=client_id,
                                                                      client_secret=SecretStr(secret)))
    return secret


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Any:
    r = await http.post(url, json=body)
    r.raise_for_status()
    return r.json()


def next_monday(tz: str) -> datetime:
    today = datetime.now(ZoneInfo(tz)).date()
    day = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))


async def seed_google(ctx: DemoContext, monday: datetime) -> dict[str, str]:
    rt, sb = ctx.rt, ctx.sandbox_url
    client_id = (await rt.vault.read_app("google")).client_id if await _has_app(rt, "google") else GOOGLE_CLIENT_ID
    secret = await _app(rt, "google", client_id)
    emails = {role: f"{local}@google.opensyte.demo" for role, (local, _) in PEOPLE.items()}
    async with httpx.AsyncClient() as http:
        await _post(http, f"{sb}/_sandbox/google/clients", {
            "client_id": client_id, "client_secret": secret, "project": "opensyte-demo",
            "redirect_uris": [f"{ctx.gateway_url.rstrip('/')}/oauth/google_calendar/callback"]})
        for role, (_, tz) in PEOPLE.items():
            await _post(http, f"{sb}/_sandbox/google/users", {"email": emails[role], "time_zone": tz})
        # The developer is busy 09:00-10:00 New York time on Monday.
        busy = monday.replace(hour=9).astimezone(UTC)
        await _post(http, f"{sb}/_sandbox/google/calendars/{emails['dev']}/events", {
            "summary": "Sprint review", "start": {"dateTime": busy.isoformat()},
            "end": {"dateTime": (busy + timedelta(hours=1)).isoformat()}})
        tok = await _post(http, f"{sb}/_sandbox/google/tokens", {
            "email": emails["pm"], "client_id": client_id, "scopes": GOOGLE_SCOPES})
    conn = await add_connection(
        rt, ctx.organization_id, "GOOGLE_CALENDAR", "default",
        {"user": emails["pm"], "calendar_id": "primary", "project_id": "opensyte-demo",
         "google_domains": ["google.opensyte.demo"]},
        OAuth2Credentials(access_token=SecretStr(tok["access_token"]), refresh_token=SecretStr(tok["refresh_token"]),
                          expires_at=datetime.now(UTC) + timedelta(seconds=tok["expires_in"]), scopes=GOOGLE_SCOPES,
                          account={"email": emails["pm"]}),
        actor="demo", replace=True)
    ctx.say(f"seeded Google Calendar connection {conn.id} for {emails['pm']} (tokens in Vault at "
            f"{rt.credentials_path(conn)})")
    return emails


async def _has_app(rt: Runtime, name: str) -> bool:
    try:
        app = await rt.vault.read_app(name)
    except CredentialsMissing:
        return False
    return bool(app.client_id and app.client_secret)


async def seed_outlook(ctx: DemoContext, monday: datetime) -> dict[str, str]:
    rt, sb = ctx.rt, ctx.sandbox_url
    client_id = (await rt.vault.read_app("microsoft")).client_id if await _has_app(rt, "microsoft") else MS_CLIENT_ID
    secret = await _app(rt, "microsoft", client_id)
    emails = {role: f"{local}@outlook.opensyte.demo" for role, (local, _) in PEOPLE.items()}
    async with httpx.AsyncClient() as http:
        await _post(http, f"{sb}/_sandbox/entra/apps", {
            "client_id": client_id, "client_secret": secret, "tenant": MS_TENANT,
            "redirect_uris": [f"{ctx.gateway_url.rstrip('/')}/oauth/outlook/callback"]})
        for role, (_, tz) in PEOPLE.items():
            await _post(http, f"{sb}/_sandbox/graph/mailboxes", {"email": emails[role], "time_zone": tz,
                                                                   "display_name": role})
        busy = monday.replace(hour=9).astimezone(UTC)
        await _post(http, f"{sb}/_sandbox/graph/mailboxes/{emails['dev']}/events", {
            "subject": "Sprint review", "start": {"dateTime": busy.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (busy + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}})
        tok = await _post(http, f"{sb}/_sandbox/entra/tokens", {"user": emails["pm"], "client_id": client_id,
                                                                "tenant": MS_TENANT})
    conn = await add_connection(
        rt, ctx.organization_id, "OUTLOOK_CALENDAR", "default",
        {"tenant": MS_TENANT, "user": emails["pm"], "mailbox": "me"},
        # Stored as already expired: the first call refreshes through MSAL (and rotates the refresh token).
        OAuth2Credentials(access_token=SecretStr(tok["access_token"]), refresh_token=SecretStr(tok["refresh_token"]),
                          expires_at=datetime.now(UTC) - timedelta(minutes=1),
                          scopes=["Calendars.ReadWrite", "User.Read"],
                          account={"email": emails["pm"], "tenant": MS_TENANT}),
        actor="demo", replace=True)
    ctx.say(f"seeded Outlook connection {conn.id} for {emails['pm']} "
            f"(refresh token sha256:{_fp(tok['refresh_token'])})")
    return emails


async def schedule(ctx: DemoContext, kind: str, emails: dict[str, str], monday: datetime) -> None:
    label = "Google Calendar" if kind == "GOOGLE_CALENDAR" else "Outlook"
    stamp = int(time.time())
    wf_id = f"demo-calendar-{kind.lower()}-schedule-{stamp}"
    res: ScheduleMeetingResult = await ctx.client.execute_workflow(
        "ScheduleMeeting",
        ScheduleMeetingInput(
            organization_id=ctx.organization_id, integration_type=kind,
            title="Project kickoff", description="Scope, milestones and owners", organizer=emails["pm"],
            timezone="America/New_York", duration_minutes=45, online_meeting=kind == "OUTLOOK_CALENDAR",
            window_start=monday.isoformat(), window_end=(monday + timedelta(days=2)).isoformat(),
            attendees=[MeetingAttendee(email=emails["dev"], time_zone="Europe/Berlin"),
                       MeetingAttendee(email=emails["client"], time_zone="Asia/Tokyo", optional=True)],
            idempotency_key=wf_id),
        id=wf_id, task_queue=ctx.settings.task_queue, result_type=ScheduleMeetingResult)
    ny, berlin = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
    ctx.expect(res.event.id and emails["dev"] in res.notified, f"[{label}] ScheduleMeeting: {res}")
    ctx.say(f"[{label}] ScheduleMeeting chose {res.slot.start.astimezone(ny):%a %Y-%m-%d %H:%M} New York "
            f"({res.slot.start.astimezone(berlin):%H:%M} Berlin) → event {res.event.id}")
    ctx.say(f"  invitations sent to: {', '.join(res.notified)}")
    ctx.say(f"  Temporal UI: {ctx.workflow_link(wf_id)}")
    upd_id = f"demo-calendar-{kind.lower()}-update-{stamp}"
    upd: UpdateCalendarEventResult = await ctx.client.execute_workflow(
        "UpdateCalendarEvent",
        UpdateCalendarEventInput(organization_id=ctx.organization_id, integration_type=kind,
                                 event_id=res.event.id or "", changes=EventPatch(location="Room 4.2"),
                                 etag=res.event.etag),
        id=upd_id, task_queue=ctx.settings.task_queue, result_type=UpdateCalendarEventResult)
    ctx.say(f"  update (location) notified: {', '.join(upd.notified) or 'nobody'}  {ctx.workflow_link(upd_id)}")
    conflict_id = f"demo-calendar-{kind.lower()}-conflict-{stamp}"
    moved: CreateCalendarEventResult = await ctx.client.execute_workflow(
        "CreateCalendarEvent",
        CalendarActionInput(organization_id=ctx.organization_id, integration_type=kind,
                            title="Design review", timezone="America/New_York",
                            start_time=monday.replace(hour=9, minute=15).replace(tzinfo=None).isoformat(),
                            end_time=monday.replace(hour=9, minute=45).replace(tzinfo=None).isoformat(),
                            attendees=[emails["dev"]], conflict_policy="next_free_slot"),
        id=conflict_id, task_queue=ctx.settings.task_queue, result_type=CreateCalendarEventResult)
    start = moved.event.start.date_time.astimezone(ny) if moved.event.start.date_time else None
    ctx.expect(moved.conflicts and start is not None and (start.hour, start.minute) != (9, 15),
               f"[{label}] next_free_slot kept the conflicting 09:15: {moved.decision}")
    ctx.say(f"  CreateCalendarEvent at 09:15 with conflict_policy=next_free_slot: {moved.decision}, "
            f"{len(moved.conflicts)} conflict(s) → {start:%H:%M} New York  {ctx.workflow_link(conflict_id)}")
    ctx.results[f"calendar.{kind}"] = {"event_id": res.event.id, "slot": res.slot.start.isoformat()}


async def run(ctx: DemoContext) -> None:
    monday = next_monday("America/New_York")
    google = await seed_google(ctx, monday)
    await schedule(ctx, "GOOGLE_CALENDAR", google, monday)
    outlook = await seed_outlook(ctx, monday)
    await schedule(ctx, "OUTLOOK_CALENDAR", outlook, monday)
    conn = await ctx.rt.store.run(ctx.rt.store.find_connection, ctx.organization_id, "OUTLOOK_CALENDAR", "default")
    creds = await ctx.rt.vault.read(ctx.rt.credentials_path(conn), use_cache=False)
    if isinstance(creds, OAuth2Credentials) and creds.refresh_token is not None:
        ctx.say(f"[Outlook] MSAL refreshed the token; Vault now holds the rotated refresh token "
                f"sha256:{_fp(creds.refresh_token.get_secret_value())}")
