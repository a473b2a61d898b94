"""Google Calendar v3 requests on one Action, with the per-user and per-project quotas applied before calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from temporalio import activity

from activities.calendar.model import (
    BusyInterval,
    CalendarEvent,
    EventList,
    Participant,
    ParticipantAvailability,
    SendUpdates,
)
from activities.google_calendar import auth, notify
from activities.google_calendar.settings import GoogleCalendarSettings
from activities.google_calendar.spec import MAX_FREEBUSY_CALENDARS, SPEC
from activities.google_calendar.translate import (
    conference_request,
    event_id_for,
    from_google,
    to_google,
    to_google_patch,
)
from core.errors import IntegrationError, PermanentError
from core.limiter import Limit
from core.pipeline import Action, Response
from vault.credentials import OAuth2Credentials, ServiceAccountCredentials

CONCURRENT_CREATES = 4  # Google has a batch endpoint, but concurrent creates keep one code path per call


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PRIMARY_CACHE = "google_calendar.primary_id"


class GoogleCalendarClient:
    """Calendar calls for one connection. Connection settings: `calendar_id` (default "primary"), `user`
    (the account's email: organizer and quota key), `project_id` (the Cloud project: quota key),
    `google_domains` (who counts as a Google user for externalOnly), `quota_per_user`,
    `quota_per_project`, `quota_period_seconds`, `limit_margin_seconds` (overrides), `not_found_attempts`."""

    def __init__(self, act: Action) -> None:
        self.act = act
        self.settings = act.settings
        self.subject: str | None = None  # service accounts: the user being impersonated
        self.email: str | None = None  # user OAuth: the connected account, when known

    # ---- identity and quotas ------------------------------------------------------------------
    async def account(self, organizer: str | None) -> str | None:
        creds = await self.act.credentials()
        if isinstance(creds, ServiceAccountCredentials):
            # Domain-wide delegation: act as the organizer when one is named, else the configured subject.
            self.subject = organizer or creds.subject or self.settings.get("user")
            return self.subject
        known = self.settings.get("user") or (creds.account.get("email") if isinstance(creds, OAuth2Credentials)
                                              else None)
        if not known and not organizer:
            known = await self.own_calendar_id()
        if organizer and known and organizer.lower() != str(known).lower():
            raise PermanentError(f"organizer: Google makes the calendar's owner the organizer; this connection acts "
                                 f"as {known}, not {organizer}", code="organizer_mismatch",
                                 details={"field": "organizer"})
        return str(known) if known else organizer

    def default_calendar(self, requested: str | None) -> str:
        return requested or str(self.settings.get("calendar_id") or "primary")

    async def own_calendar_id(self) -> str | None:
        """The id (the account's email) of the connection's own primary calendar, for a connection added by token
        without a `user` setting; looked up once per connection and process."""
        cache: dict[str, str | None] = self.act.rt.extras.setdefault(PRIMARY_CACHE, {})
        key = self.act.connection.id or ""
        if key not in cache:
            cache[key] = (await self.primary_calendar()).get("id")
        return cache[key]

    def google_domains(self) -> list[str]:
        domains = list(self.settings.get("google_domains") or [])
        user = self.subject or self.settings.get("user")
        if user and "@" in str(user):
            domains.append(str(user).rsplit("@", 1)[1])
        return domains

    def max_participants(self) -> int:
        return MAX_FREEBUSY_CALENDARS

    def notified_on_create(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        return notify.on_create(event, send_updates, organizer, self.google_domains())

    def notified_on_update(self, before: CalendarEvent, after: CalendarEvent, changed: set[str],
                           send_updates: SendUpdates, organizer: str | None) -> list[str]:
        return notify.on_update(before, after, send_updates, organizer, self.google_domains())

    def notified_on_delete(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        return notify.on_create(event, send_updates, organizer, self.google_domains())

    def limits(self) -> list[Limit]:
        s, rs = self.settings, self.act.rt.section(GoogleCalendarSettings)
        margin = s.get("limit_margin_seconds")
        margin = None if margin is None else max(0.0, float(margin))
        period = s.get("quota_period_seconds")
        period = None if period is None else float(period)
        project = str(s.get("project_id") or "default")
        user = str(self.subject or s.get("user") or self.email or self.act.connection.id)
        return [
            SPEC.rate_limits["user"].window(f"{project}:{user}", limit=int(s.get("quota_per_user")
                                                                          or rs.user_quota_per_minute),
                                            period=period, margin=margin),
            SPEC.rate_limits["project"].window(project, limit=int(s.get("quota_per_project")
                                                                  or rs.project_quota_per_minute),
                                               period=period, margin=margin),
        ]

    # ---- HTTP ------------------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return self.act.base_url().rstrip("/") + "/" + "/".join(quote(p, safe="") for p in parts)

    async def _auth(self, force: bool = False) -> tuple[dict[str, str], bool]:
        creds = await self.act.credentials()
        if isinstance(creds, ServiceAccountCredentials):
            self.subject = self.subject or creds.subject
            scopes = [s for s in self.act.rt.section(GoogleCalendarSettings).scopes.split(",") if s]
            token = await auth.service_account_token(self.act.rt, self.act.connection, creds, self.subject, scopes,
                                                     force=force)
            return {"Authorization": f"Bearer {token}"}, False
        if isinstance(creds, OAuth2Credentials):
            self.email = creds.account.get("email")
        return {}, True

    async def call(self, method: str, *parts: str, params: dict[str, Any] | None = None, json: Any = None,
                   headers: dict[str, str] | None = None, gone_ok: bool = False) -> Response | None:
        """One request; `gone_ok` turns 404/410 into None (a delete or lookup of something gone)."""
        extra, authenticate = await self._auth()
        kwargs: dict[str, Any] = {"params": params, "json": json, "limits": self.limits(),
                                  "authenticate": authenticate}
        try:
            try:
                return await self.act.call(method, self.url(*parts), headers={**extra, **(headers or {})}, **kwargs)
            except IntegrationError as err:
                if authenticate or not err.details.get("refresh"):
                    raise
                # A service-account token was refused: mint a fresh one once and retry once.
                extra, _ = await self._auth(force=True)
                return await self.act.call(method, self.url(*parts), headers={**extra, **(headers or {})}, **kwargs)
        except IntegrationError as err:
            status = err.details.get("status")
            if gone_ok and status in (404, 410):
                return None
            if err.code == "notFound" and self._final_not_found():
                # Outside an activity (a CLI or dashboard test) there was one attempt: say so, not the policy's.
                tries = activity.info().attempt if activity.in_activity() else 1
                raise PermanentError(f"{err.message}: not found" + (f" after {tries} attempts" if tries > 1 else ""),
                                     code="notFound", details=err.details) from None
            raise

    def _not_found_attempts(self) -> int:
        default = self.act.rt.section(GoogleCalendarSettings).not_found_attempts
        return int(self.settings.get("not_found_attempts") or default)

    def _final_not_found(self) -> bool:
        attempt = activity.info().attempt if activity.in_activity() else self._not_found_attempts()
        return attempt >= self._not_found_attempts()

    # ---- events ----------------------------------------------------------------------------------
    async def insert_batch(self, calendar: str, items: Sequence[tuple[CalendarEvent, str | None]],
                           send_updates: SendUpdates) -> list[CalendarEvent | IntegrationError]:
        """Concurrent single creates (the quota limiter paces them), each outcome returned, errors included."""
        sem = asyncio.Semaphore(CONCURRENT_CREATES)

        async def one(event: CalendarEvent, key: str | None) -> CalendarEvent | IntegrationError:
            async with sem:
                try:
                    return (await self.insert(calendar, event, key, send_updates))[0]
                except IntegrationError as err:  # the caller decides what each outcome means
                    return err

        return list(await asyncio.gather(*(one(ev, key) for ev, key in items)))

    async def insert(self, calendar: str, event: CalendarEvent, key: str | None,
                     send_updates: SendUpdates) -> tuple[CalendarEvent, bool]:
        event_id = event_id_for(key) if key else None
        body = to_google(event, request_id=event_id)
        if event_id:
            body["id"] = event_id  # a retry of this activity gets 409 duplicate instead of a second event
        params: dict[str, Any] = {"sendUpdates": send_updates}
        if event.online_meeting:
            params["conferenceDataVersion"] = 1
        try:
            resp = await self.call("POST", "calendars", calendar, "events", params=params, json=body)
        except IntegrationError as err:
            if err.code != "duplicate" or not event_id:
                raise
            existing = await self.get(calendar, event_id, event.time_zone)
            if existing is None:  # pragma: no cover - get without gone_ok raises instead
                raise
            return existing, False
        if resp is None:  # pragma: no cover - only with gone_ok
            raise PermanentError("empty answer to events.insert", code="empty")
        return from_google(resp.json(), calendar, calendar_tz=event.time_zone), True

    async def get(self, calendar: str, event_id: str, hint_tz: str | None, *, gone_ok: bool = False
                  ) -> CalendarEvent | None:
        params = {"timeZone": hint_tz} if hint_tz else None
        resp = await self.call("GET", "calendars", calendar, "events", event_id, params=params, gone_ok=gone_ok)
        return None if resp is None else from_google(resp.json(), calendar, calendar_tz=hint_tz)

    async def patch(self, calendar: str, current: CalendarEvent, updated: CalendarEvent, changed: set[str],
                    etag: str, send_updates: SendUpdates) -> CalendarEvent:
        body = to_google_patch(updated, changed, request_id=current.id)
        params: dict[str, Any] = {"sendUpdates": send_updates}
        if "online_meeting" in changed or current.online_meeting:
            # Conference changes persist only when every modifying request sends conferenceDataVersion=1.
            params["conferenceDataVersion"] = 1
            if updated.online_meeting and not current.online_meeting:
                body["conferenceData"] = conference_request(f"{current.id}-meet")
        resp = await self.call("PATCH", "calendars", calendar, "events", current.id or "", params=params, json=body,
                               headers={"If-Match": etag})
        if resp is None:  # pragma: no cover - only with gone_ok
            raise PermanentError("empty answer to events.patch", code="empty")
        return from_google(resp.json(), calendar, calendar_tz=updated.time_zone)

    async def delete(self, calendar: str, event_id: str, etag: str | None, send_updates: SendUpdates) -> bool:
        headers = {"If-Match": etag} if etag else None
        # 410 deleted (already cancelled) and 404 mean a repeated delete: success, nothing to do.
        resp = await self.call("DELETE", "calendars", calendar, "events", event_id,
                               params={"sendUpdates": send_updates}, headers=headers, gone_ok=True)
        return resp is not None

    async def _list(self, parts: Sequence[str], params: dict[str, Any], calendar: str, hint_tz: str | None
                    ) -> EventList:
        resp = await self.call("GET", *parts, params=params)
        if resp is None:  # pragma: no cover - only with gone_ok
            raise PermanentError("empty answer to events.list", code="empty")
        data = resp.json()
        tz = hint_tz or data.get("timeZone")
        return EventList(
            events=[from_google(item, calendar, calendar_tz=tz) for item in data.get("items") or []
                    if item.get("status") != "cancelled"],
            next_page_token=data.get("nextPageToken"), next_sync_token=data.get("nextSyncToken"))

    async def list_window(self, calendar: str, lo: datetime, hi: datetime, max_results: int,
                          page_token: str | None, hint_tz: str | None) -> EventList:
        params: dict[str, Any] = {"timeMin": rfc3339(lo), "timeMax": rfc3339(hi), "singleEvents": "true",
                                  "orderBy": "startTime", "maxResults": max_results}
        if page_token:
            params["pageToken"] = page_token
        if hint_tz:
            params["timeZone"] = hint_tz
        return await self._list(("calendars", calendar, "events"), params, calendar, hint_tz)

    async def instances(self, calendar: str, event_id: str, lo: datetime, hi: datetime, max_results: int,
                        page_token: str | None) -> EventList:
        params: dict[str, Any] = {"timeMin": rfc3339(lo), "timeMax": rfc3339(hi), "maxResults": max_results}
        if page_token:
            params["pageToken"] = page_token
        return await self._list(("calendars", calendar, "events", event_id, "instances"), params, calendar, None)

    async def sync(self, calendar: str, sync_token: str | None, max_pages: int) -> EventList:
        """Incremental sync from `sync_token`; an expired token (410 fullSyncRequired) restarts a full sync."""
        full = sync_token is None
        try:
            return await self._sync_pages(calendar, sync_token, max_pages, full)
        except IntegrationError as err:
            if not err.details.get("full_sync"):
                raise
            return await self._sync_pages(calendar, None, max_pages, True)

    async def _sync_pages(self, calendar: str, sync_token: str | None, max_pages: int, full: bool) -> EventList:
        out = EventList(full_sync=full)
        page: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"maxResults": 250}
            if sync_token:
                params["syncToken"] = sync_token
            if page:
                params["pageToken"] = page
            resp = await self.call("GET", "calendars", calendar, "events", params=params)
            data = resp.json() if resp is not None else {}
            for item in data.get("items") or []:
                if item.get("status") == "cancelled":
                    out.deleted_ids.append(item["id"])
                else:
                    out.events.append(from_google(item, calendar, calendar_tz=data.get("timeZone")))
            page = data.get("nextPageToken")
            if not page:
                out.next_sync_token = data.get("nextSyncToken")
                return out
        out.next_page_token = page
        return out

    # ---- availability -------------------------------------------------------------------------
    async def free_busy(self, calendar: str, participants: Sequence[Participant], lo: datetime, hi: datetime,
                        default_tz: str) -> list[ParticipantAvailability]:
        body = {"timeMin": rfc3339(lo), "timeMax": rfc3339(hi), "timeZone": "UTC",
                "items": [{"id": p.email} for p in participants]}
        resp = await self.call("POST", "freeBusy", json=body)
        calendars = (resp.json() if resp is not None else {}).get("calendars") or {}
        out: list[ParticipantAvailability] = []
        for p in participants:
            entry = calendars.get(p.email) or next(
                (v for k, v in calendars.items() if k.lower() == p.email.lower()), None)
            if entry is None:
                out.append(ParticipantAvailability(email=p.email, error="not in the freeBusy answer"))
                continue
            errors = entry.get("errors") or []
            if errors:
                out.append(ParticipantAvailability(email=p.email, error=",".join(
                    str(e.get("reason")) for e in errors)))
                continue
            busy = [BusyInterval(start=datetime.fromisoformat(b["start"].replace("Z", "+00:00")),
                                 end=datetime.fromisoformat(b["end"].replace("Z", "+00:00")))
                    for b in entry.get("busy") or []]
            out.append(ParticipantAvailability(email=p.email, busy=busy))
        return out

    async def primary_calendar(self) -> dict[str, Any]:
        resp = await self.call("GET", "calendars", "primary")
        return resp.json() if resp is not None else {}
