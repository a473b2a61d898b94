"""Graph calendar requests on one Action, with the per-mailbox budget (10,000 / 10 min) and 4 concurrent
requests per mailbox enforced before each call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from activities.calendar.model import (
    BusyInterval,
    CalendarEvent,
    EventList,
    Participant,
    ParticipantAvailability,
    SendUpdates,
    WorkingHours,
)
from activities.calendar.tz import to_windows
from activities.outlook import auth, notify
from activities.outlook.settings import OutlookSettings
from activities.outlook.spec import MAX_SCHEDULE_DAYS, MAX_SCHEDULES, SPEC
from activities.outlook.translate import (
    from_graph,
    parse_graph_datetime,
    to_graph,
    to_graph_patch,
    transaction_id,
    zone_of,
)
from core.errors import ConfigurationError, IntegrationError, PermanentError, TemporaryError
from core.limiter import Concurrency, Limit
from core.pipeline import Action, Response
from vault.credentials import ClientCredentials, OAuth2Credentials

GRAPH_BATCH_LIMIT = 20  # requests per JSON batch

BUSY_STATUSES = {"busy", "tentative", "oof", "workingElsewhere", "unknown"}


def graph_utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


class OutlookCalendarClient:
    """Calendar calls for one connection. Connection settings: `mailbox` (UPN or id; "me" for delegated
    connections, required for app-only ones unless the organizer names it), `calendar_id` (default: the
    mailbox's default calendar), `tenant`, `user` (the signed-in user's email), `quota_per_10_minutes`,
    `quota_period_seconds`, `limit_margin_seconds`, `concurrency` (overrides)."""

    def __init__(self, act: Action) -> None:
        self.act = act
        self.settings = act.settings
        self.mailbox: str | None = None
        self.app_key = "delegated"
        self._user: str | None = None

    # ---- identity and limits ------------------------------------------------------------------
    async def _resolve(self, organizer: str | None = None) -> None:
        creds = await self.act.credentials()
        if isinstance(creds, ClientCredentials):
            self.app_key = creds.client_id
            mailbox = organizer or self.settings.get("mailbox")
            if not mailbox or mailbox == "me":
                raise ConfigurationError("an app-only Outlook connection needs a mailbox: set the connection's "
                                         "`mailbox` setting or name the organizer", code="mailbox_required",
                                         details={"field": "mailbox"})
            self.mailbox = self.mailbox or str(mailbox)
            return
        known = self.settings.get("user") or (creds.account.get("email") if isinstance(creds, OAuth2Credentials)
                                              else None)
        if organizer and known and organizer.lower() != str(known).lower():
            raise PermanentError(f"organizer: Graph makes the mailbox owner the organizer; this connection signs in "
                                 f"as {known}, not {organizer}", code="organizer_mismatch",
                                 details={"field": "organizer"})
        self.mailbox = self.mailbox or str(self.settings.get("mailbox") or "me")
        self._user = str(known) if known else None

    async def account(self, organizer: str | None) -> str | None:
        await self._resolve(organizer)
        if self.mailbox and self.mailbox != "me":
            return self.mailbox
        return self._user or organizer

    def default_calendar(self, requested: str | None) -> str:
        return requested or str(self.settings.get("calendar_id") or "")

    def notified_on_create(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        return notify.on_create(event, send_updates, organizer)

    def notified_on_update(self, before: CalendarEvent, after: CalendarEvent, changed: set[str],
                           send_updates: SendUpdates, organizer: str | None) -> list[str]:
        return notify.on_update(before, after, changed, send_updates, organizer)

    def notified_on_delete(self, event: CalendarEvent, send_updates: SendUpdates, organizer: str | None
                           ) -> list[str]:
        return notify.on_delete(event, send_updates, organizer)

    def max_participants(self) -> int:
        return MAX_SCHEDULES

    def _mailbox_key(self) -> str:
        if self.mailbox and self.mailbox != "me":
            return self.mailbox.lower()
        return str(self._user or self.act.connection.id)

    def limits(self) -> tuple[list[Limit], list[Concurrency]]:
        s, rs = self.settings, self.act.rt.section(OutlookSettings)
        key = f"{self.app_key}:{self._mailbox_key()}"
        margin = s.get("limit_margin_seconds")
        period = s.get("quota_period_seconds")
        mailbox = SPEC.rate_limits["mailbox"]
        budget = int(s.get("quota_per_10_minutes") or rs.mailbox_requests_per_10_minutes)
        window = mailbox.window(key, limit=budget, period=None if period is None else float(period),
                                margin=None if margin is None else max(0.0, float(margin)))
        return [window], [mailbox.concurrency(key, int(s.get("concurrency") or rs.mailbox_concurrency))]

    # ---- HTTP ------------------------------------------------------------------------------------
    def root(self) -> str:
        base = self.act.base_url().rstrip("/")
        if not self.mailbox or self.mailbox == "me":
            return f"{base}/me"
        return f"{base}/users/{quote(self.mailbox, safe='@')}"

    def events_path(self, calendar: str) -> str:
        return f"{self.root()}/calendars/{quote(calendar, safe='')}/events" if calendar else f"{self.root()}/events"

    def event_path(self, event_id: str) -> str:
        return f"{self.root()}/events/{quote(event_id, safe='')}"

    async def _auth(self, force: bool = False) -> tuple[dict[str, str], bool]:
        creds = await self.act.credentials()
        if isinstance(creds, ClientCredentials):
            token = await auth.app_only_token(self.act.rt, creds, force=force)
            return {"Authorization": f"Bearer {token}"}, False
        return {}, True

    async def _ensure(self) -> None:
        """Resolve the mailbox before any URL is built (app-only connections never use /me)."""
        if self.mailbox is None:
            await self._resolve()

    async def call(self, method: str, url: str, *, params: dict[str, Any] | None = None, json: Any = None,
                   headers: dict[str, str] | None = None, time_zone: str | None = None, gone_ok: bool = False
                   ) -> Response | None:
        extra, authenticate = await self._auth()
        hdrs = {**extra, **(headers or {})}
        if time_zone:
            # Times in answers come in this zone (UTC otherwise); Graph echoes Preference-Applied.
            hdrs["Prefer"] = f'outlook.timezone="{to_windows(time_zone)}"'
        limits, concurrency = self.limits()
        kwargs: dict[str, Any] = {"params": params, "json": json, "limits": limits, "concurrency": concurrency,
                                  "authenticate": authenticate}
        try:
            try:
                return await self.act.call(method, url, headers=hdrs, **kwargs)
            except IntegrationError as err:
                if authenticate or not err.details.get("refresh"):
                    raise
                extra, _ = await self._auth(force=True)  # an app token was refused: a fresh one, once
                return await self.act.call(method, url, headers={**hdrs, **extra}, **kwargs)
        except IntegrationError as err:
            if gone_ok and err.code == "notFound":
                return None
            raise

    # ---- events ----------------------------------------------------------------------------------
    async def insert(self, calendar: str, event: CalendarEvent, key: str | None,
                     send_updates: SendUpdates) -> tuple[CalendarEvent, bool]:
        await self._ensure()
        # Graph deduplicates creates by transactionId, so a retried activity gets the first event back.
        body = to_graph(event, transaction=transaction_id(key) if key else None)
        resp = await self.call("POST", self.events_path(calendar), json=body, time_zone=event.time_zone)
        if resp is None:  # pragma: no cover - only with gone_ok
            raise PermanentError("empty answer to create event", code="empty")
        return from_graph(resp.json(), calendar or None, hint_tz=event.time_zone), True

    async def insert_batch(self, calendar: str, items: Sequence[tuple[CalendarEvent, str | None]],
                           send_updates: SendUpdates) -> list[CalendarEvent | IntegrationError]:
        """Creates through JSON batching, 20 per `$batch` request. Each request in a batch counts against the
        mailbox's budget (so the limiter takes one slot for each) and carries its own transactionId, so a
        resent member never creates an event twice. Every member's outcome is returned, errors included:
        the caller records what succeeded before a throttled member makes it retry."""
        await self._ensure()
        base = self.act.base_url().rstrip("/")
        relative = self.events_path(calendar)[len(base):]
        limits, _ = self.limits()
        out: list[CalendarEvent | IntegrationError] = []
        for start in range(0, len(items), GRAPH_BATCH_LIMIT):
            chunk = items[start:start + GRAPH_BATCH_LIMIT]
            for _ in range(len(chunk) - 1):  # the $batch call itself takes the first slot
                await self.act.rt.limiter.acquire(limits)
            requests = []
            for i, (event, key) in enumerate(chunk):
                headers = {"Content-Type": "application/json"}
                if event.time_zone:
                    headers["Prefer"] = f'outlook.timezone="{to_windows(event.time_zone)}"'
                requests.append({"id": str(i), "method": "POST", "url": relative, "headers": headers,
                                 "body": to_graph(event, transaction=transaction_id(key) if key else None)})
            resp = await self.call("POST", f"{base}/$batch", json={"requests": requests})
            answers = {str(a.get("id")): a for a in ((resp.json() if resp else {}) or {}).get("responses") or []}
            for i, (event, _key) in enumerate(chunk):
                answer = answers.get(str(i))
                if answer is not None and 200 <= int(answer.get("status", 0)) < 300:
                    out.append(from_graph(answer.get("body") or {}, calendar or None, hint_tz=event.time_zone))
                    continue
                out.append(self._batch_error(answer, i))
        return out

    def _batch_error(self, answer: dict[str, Any] | None, index: int) -> IntegrationError:
        if answer is None:
            return TemporaryError(f"Graph's batch answer lacks request {index}", code="batch_incomplete")
        status = int(answer.get("status", 0))
        headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
        err = self.act.provider.classify(status, headers, answer.get("body")) or PermanentError(
            f"batch request {index} answered HTTP {status}", code=f"http_{status}")
        retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if retry_after and err.retry_after is None:
            try:
                err.retry_after = float(retry_after)
            except ValueError:
                pass
        err.provider = err.provider or "outlook"
        return err

    async def get(self, calendar: str, event_id: str, hint_tz: str | None, *, gone_ok: bool = False
                  ) -> CalendarEvent | None:
        await self._ensure()
        resp = await self.call("GET", self.event_path(event_id), time_zone=hint_tz, gone_ok=gone_ok)
        return None if resp is None else from_graph(resp.json(), calendar or None, hint_tz=hint_tz)

    async def patch(self, calendar: str, current: CalendarEvent, updated: CalendarEvent, changed: set[str],
                    etag: str, send_updates: SendUpdates) -> CalendarEvent:
        await self._ensure()
        body = to_graph_patch(updated, changed)
        resp = await self.call("PATCH", self.event_path(current.id or ""), json=body, headers={"If-Match": etag},
                               time_zone=updated.time_zone)
        if resp is None:  # pragma: no cover - only with gone_ok
            raise PermanentError("empty answer to update event", code="empty")
        return from_graph(resp.json(), calendar or None, hint_tz=updated.time_zone)

    async def delete(self, calendar: str, event_id: str, etag: str | None, send_updates: SendUpdates) -> bool:
        await self._ensure()
        headers = {"If-Match": etag} if etag else None
        # 204 deleted; 404 on a repeated delete means it is already gone: success.
        resp = await self.call("DELETE", self.event_path(event_id), headers=headers, gone_ok=True)
        return resp is not None

    async def _page(self, url: str, params: dict[str, Any] | None, calendar: str, hint_tz: str | None) -> EventList:
        resp = await self.call("GET", url, params=params, time_zone=hint_tz or "UTC")
        data = resp.json() if resp is not None else {}
        return EventList(events=[from_graph(item, calendar or None, hint_tz=hint_tz) for item in data.get("value") or []
                                 if not item.get("isCancelled")],
                         next_page_token=data.get("@odata.nextLink"))

    def _next_link(self, token: str) -> str:
        # Only follow links on our own Graph base URL: a token is never sent anywhere else.
        base = self.act.base_url().rstrip("/")
        if not token.startswith(base + "/"):
            raise PermanentError("page_token is not a Graph @odata.nextLink of this connection",
                                 code="invalid_page_token", details={"field": "page_token"})
        return token

    async def list_window(self, calendar: str, lo: datetime, hi: datetime, max_results: int,
                          page_token: str | None, hint_tz: str | None) -> EventList:
        await self._ensure()
        if page_token:
            return await self._page(self._next_link(page_token), None, calendar, hint_tz)
        root = f"{self.root()}/calendars/{quote(calendar, safe='')}" if calendar else self.root()
        params = {"startDateTime": lo.astimezone(UTC).isoformat(), "endDateTime": hi.astimezone(UTC).isoformat(),
                  "$top": max_results, "$orderby": "start/dateTime"}
        return await self._page(f"{root}/calendarView", params, calendar, hint_tz)

    async def instances(self, calendar: str, event_id: str, lo: datetime, hi: datetime, max_results: int,
                        page_token: str | None) -> EventList:
        await self._ensure()
        if page_token:
            return await self._page(self._next_link(page_token), None, calendar, None)
        params = {"startDateTime": lo.astimezone(UTC).isoformat(), "endDateTime": hi.astimezone(UTC).isoformat(),
                  "$top": max_results}
        return await self._page(f"{self.event_path(event_id)}/instances", params, calendar, None)

    # ---- availability -------------------------------------------------------------------------
    async def free_busy(self, calendar: str, participants: Sequence[Participant], lo: datetime, hi: datetime,
                        default_tz: str) -> list[ParticipantAvailability]:
        await self._ensure()
        if hi - lo >= timedelta(days=MAX_SCHEDULE_DAYS):
            raise PermanentError(f"window: getSchedule covers less than {MAX_SCHEDULE_DAYS} days, got "
                                 f"{(hi - lo).days}", code="window_too_long",
                                 details={"field": "window_end", "limit_days": MAX_SCHEDULE_DAYS})
        body = {"schedules": [p.email for p in participants],
                "startTime": {"dateTime": graph_utc(lo), "timeZone": "UTC"},
                "endTime": {"dateTime": graph_utc(hi), "timeZone": "UTC"},
                "availabilityViewInterval": 30}
        resp = await self.call("POST", f"{self.root()}/calendar/getSchedule", json=body, time_zone="UTC")
        items = (resp.json() if resp is not None else {}).get("value") or []
        by_id = {str(i.get("scheduleId", "")).lower(): i for i in items}
        out: list[ParticipantAvailability] = []
        for p in participants:
            item = by_id.get(p.email.lower())
            if item is None:
                out.append(ParticipantAvailability(email=p.email, error="not in the getSchedule answer"))
                continue
            if item.get("error"):
                err = item["error"]
                out.append(ParticipantAvailability(email=p.email, error=str(err.get("responseCode") or
                                                                              err.get("message") or "error")))
                continue
            busy = []
            for s in item.get("scheduleItems") or []:
                status = str(s.get("status") or "busy")
                if status not in BUSY_STATUSES:
                    continue
                start = parse_graph_datetime(s["start"]["dateTime"]).replace(tzinfo=UTC)
                end = parse_graph_datetime(s["end"]["dateTime"]).replace(tzinfo=UTC)
                busy.append(BusyInterval(start=start, end=end, status="busy" if status == "unknown" else status))
            out.append(ParticipantAvailability(email=p.email, busy=busy, availability_view=item.get("availabilityView"),
                                               **self._working_hours(item.get("workingHours"), p, default_tz)))
        return out

    @staticmethod
    def _working_hours(raw: dict[str, Any] | None, p: Participant, default_tz: str) -> dict[str, Any]:
        if not raw or not raw.get("daysOfWeek"):
            return {}
        tz_name = (raw.get("timeZone") or {}).get("name")
        try:
            tz = zone_of(tz_name, p.time_zone or default_tz)
            wh = WorkingHours(days=[d.lower() for d in raw["daysOfWeek"]], start=str(raw["startTime"])[:8],
                              end=str(raw["endTime"])[:8], time_zone=tz)
        except (IntegrationError, ValueError, KeyError):
            return {}  # a custom zone we cannot map: fall back to input or defaults
        return {"working_hours": wh, "working_hours_source": "provider"}

    async def me(self) -> dict[str, Any]:
        await self._resolve()
        resp = await self.call("GET", self.root())
        return resp.json() if resp is not None else {}
