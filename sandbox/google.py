"""Google Calendar v3 + Google OAuth fake: the errors guide's bodies and reasons, etags/If-Match (412),
client ids (409 duplicate), 410 on a repeated delete and on expired sync tokens, exclusive list bounds,
recurring expansion, freeBusy, sendUpdates notifications, per-user/per-project quotas, and a token
endpoint with refresh, authorization-code (PKCE) and service-account JWT grants."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

import jwt
from dateutil import rrule as du
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from sandbox.state import SandboxState

SCOPE_CAL = "https://www.googleapis.com/auth/calendar"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SCOPE_EVENTS_RO = "https://www.googleapis.com/auth/calendar.events.readonly"
SCOPE_FREEBUSY = "https://www.googleapis.com/auth/calendar.freebusy"
WRITE_SCOPES = {SCOPE_CAL, SCOPE_EVENTS}
READ_SCOPES = WRITE_SCOPES | {SCOPE_READONLY, SCOPE_EVENTS_RO}
FREEBUSY_SCOPES = {SCOPE_CAL, SCOPE_READONLY, SCOPE_FREEBUSY}
BASE32HEX = set("0123456789abcdefghijklmnopqrstuv")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


def gerror(status: int, reason: str, message: str, *, domain: str = "global", location_type: str | None = None,
           location: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The calendar errors guide's body: {"error": {"errors": [{domain, reason, message, ...}], code, message}}."""
    item: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location_type:
        item.update(locationType=location_type, location=location)
    return JSONResponse({"error": {"errors": [item], "code": status, "message": message}}, status_code=status,
                        headers=headers)


def rfc3339_ms(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def new_id(n: int = 26) -> str:
    return "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(n))


class BadEvent(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _bad(reason: str, message: str, **kw: Any) -> BadEvent:
    return BadEvent(gerror(400, reason, message, **kw))


@dataclass
class Token:
    email: str | None  # None: a service account acting as itself
    project: str
    scopes: set[str]
    expires_at: float
    client_id: str


@dataclass
class GoogleFakeState:
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    calendars: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    change_seq: int = 0
    sync_epoch: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    notifications: list[dict[str, Any]] = field(default_factory=list)
    quota_per_user: int = 600
    quota_per_project: int = 10_000
    quota_period: float = 60.0
    throttle_status: int = 403
    user_log: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    project_log: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    quota_exceeded: set[str] = field(default_factory=set)
    google_domains: set[str] = field(default_factory=lambda: {"gmail.com", "googlemail.com"})
    fail_after_commit: int = 0
    token_faults: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    throttled: int = 0
    default_user: str | None = None


class ClientConfig(BaseModel):
    client_id: str
    client_secret: str
    redirect_uris: list[str] = Field(default_factory=list)
    project: str | None = None


class UserConfig(BaseModel):
    email: str
    time_zone: str = "UTC"
    summary: str | None = None


class ServiceAccountConfig(BaseModel):
    client_email: str
    public_key_pem: str
    project: str = "sandbox-project"
    domain_wide_delegation: bool = True
    scopes: list[str] = Field(default_factory=lambda: [SCOPE_CAL, SCOPE_EVENTS, SCOPE_READONLY])


class TokenRequest(BaseModel):
    email: str
    client_id: str
    scopes: list[str] = Field(default_factory=lambda: [SCOPE_EVENTS, SCOPE_READONLY])
    expires_in: int = 3599


class QuotaConfig(BaseModel):
    per_user: int = 600
    per_project: int = 10_000
    period: float = 60.0
    throttle_status: int = 403


class GoogleFake:
    """Routes under /google (Calendar v3 at /google/calendar/v3, OAuth at /google/token and /google/authorize)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = GoogleFakeState()

    # ---- tokens -------------------------------------------------------------------------------------
    def _issue(self, email: str | None, client_id: str, project: str, scopes: set[str], expires_in: int = 3599
               ) -> dict[str, Any]:
        token = "ya29.sandbox-" + secrets.token_urlsafe(24)
        self.state.access[token] = Token(email, project, scopes, time.time() + expires_in, client_id)
        return {"access_token": token, "expires_in": expires_in, "scope": " ".join(sorted(scopes)),
                "token_type": "Bearer"}

    def _project_of(self, client_id: str) -> str:
        return str(self.state.clients.get(client_id, {}).get("project") or client_id)

    def _authenticate(self, request: Request) -> Token | JSONResponse:
        auth = request.headers.get("authorization", "")
        tok = self.state.access.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if tok is None or tok.expires_at <= time.time():
            return gerror(401, "authError", "Invalid Credentials", location_type="header", location="Authorization")
        return tok

    def _quota(self, tok: Token) -> JSONResponse | None:
        """Sliding per-minute windows per (project, user) and per project, as Google counts them."""
        st = self.state
        now = self.sandbox.arrival()  # counted when the request reached Google
        ukey, pkey = f"{tok.project}:{tok.email}", tok.project
        ulog, plog = st.user_log[ukey], st.project_log[pkey]
        for log in (ulog, plog):
            while log and log[0] <= now - st.quota_period:
                log.popleft()
        if tok.email and tok.email.lower() in st.quota_exceeded:
            return gerror(403, "quotaExceeded", "Calendar usage limits exceeded.", domain="usageLimits")
        if len(ulog) >= st.quota_per_user:
            st.throttled += 1
            if st.throttle_status == 429:
                return gerror(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
            return gerror(403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits")
        if len(plog) >= st.quota_per_project:
            st.throttled += 1
            return gerror(st.throttle_status, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
        ulog.append(now)
        plog.append(now)
        return None

    async def _guard(self, request: Request, scopes: set[str]) -> Token | JSONResponse:
        fault = await self.sandbox.fault_for("google")
        if fault == "outage" or fault == "5xx":
            return gerror(503 if fault == "outage" else 500, "backendError", "Backend Error")
        if fault == "429":
            cfg = self.sandbox.faults.get("google")
            headers = {"Retry-After": str(cfg.retry_after)} if cfg and cfg.retry_after is not None else None
            return gerror(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits", headers=headers)
        tok = self._authenticate(request)
        if isinstance(tok, JSONResponse):
            return tok
        if not (tok.scopes & scopes):
            return gerror(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        return self._quota(tok) or tok

    async def _target(self, request: Request, scopes: set[str], calendar_id: str) -> str | JSONResponse:
        """The caller's calendar after faults, auth, scopes and quota: an id, or the error Google sends."""
        tok = await self._guard(request, scopes)
        return tok if isinstance(tok, JSONResponse) else self._calendar(tok, calendar_id)

    def _calendar(self, tok: Token, calendar_id: str) -> str | JSONResponse:
        owner = (tok.email or "").lower()
        cal = owner if calendar_id == "primary" else calendar_id.lower()
        if not cal or cal != owner or cal not in self.state.users:
            return gerror(404, "notFound", "Not Found")
        return cal

    # ---- event validation and time arithmetic ----------------------------------------------------------
    def _time(self, raw: Any, which: str, recurring: bool) -> tuple[str, datetime | date, str | None]:
        if not isinstance(raw, dict) or not (raw.get("date") or raw.get("dateTime")):
            raise _bad("required", f"Missing {which} time.")
        tz_name = raw.get("timeZone")
        if tz_name is not None and tz_name not in available_timezones():
            raise _bad("invalid", f"Invalid time zone definition for {which} time.")
        if raw.get("date"):
            if raw.get("dateTime"):
                raise _bad("invalid", f"Invalid {which} time.")
            try:
                return "date", date.fromisoformat(str(raw["date"])), tz_name
            except ValueError:
                raise _bad("invalid", f"Invalid {which} time.") from None
        try:
            parsed = datetime.fromisoformat(str(raw["dateTime"]).replace("Z", "+00:00"))
        except ValueError:
            raise _bad("invalid", f"Invalid {which} time.") from None
        if recurring and not tz_name:
            raise _bad("required", f"Missing time zone definition for {which} time.")
        if parsed.tzinfo is None:
            if not tz_name:
                raise _bad("required", f"Missing time zone definition for {which} time.")
            parsed = parsed.replace(tzinfo=ZoneInfo(tz_name))
        return "dateTime", parsed, tz_name

    def _check_recurrence(self, lines: Any, start: tuple[str, datetime | date, str | None]) -> None:
        if not isinstance(lines, list):
            raise _bad("invalid", "Invalid recurrence rule.")
        for line in lines:
            name = str(line).split(":", 1)[0].split(";", 1)[0].upper()
            if name not in ("RRULE", "EXRULE", "RDATE", "EXDATE"):
                raise _bad("invalid", "Invalid recurrence rule.")  # DTSTART/DTEND lines are not allowed
        try:
            self._ruleset(lines, start)
        except (ValueError, TypeError):
            raise _bad("invalid", "Invalid recurrence rule.") from None

    @staticmethod
    def _ruleset(lines: list[str], start: tuple[str, datetime | date, str | None]) -> du.rruleset:
        kind, value, tz_name = start
        if kind == "dateTime" and isinstance(value, datetime):
            dtstart = value.astimezone(ZoneInfo(tz_name or "UTC"))
        else:
            dtstart = datetime.combine(value, datetime.min.time()) if isinstance(value, date) else value
        # dateutil enforces RFC 5545: UNTIL must be UTC when DTSTART is zoned.
        rset = du.rrulestr("\n".join(lines), dtstart=dtstart, forceset=True)
        return rset

    def validate(self, body: dict[str, Any], *, patch_of: dict[str, Any] | None = None) -> None:
        recurring = bool(body.get("recurrence"))
        start = self._time(body.get("start"), "start", recurring)
        end = self._time(body.get("end"), "end", recurring)
        if start[0] != end[0]:
            raise _bad("invalid", "Invalid start time.")
        if end[1] <= start[1]:
            raise _bad("timeRangeEmpty", "The specified time range is empty.", domain="calendar",
                       location_type="parameter", location="end")
        if recurring:
            self._check_recurrence(body["recurrence"], start)
        reminders = body.get("reminders") or {}
        overrides = reminders.get("overrides") or []
        if reminders.get("useDefault") and overrides:
            raise _bad("cannotUseDefaultRemindersAndSpecifyOverride",
                       "Cannot specify both default reminders and overrides at the same time.")
        if len(overrides) > 5:
            raise _bad("invalid", "Too many reminders.")
        for o in overrides:
            if o.get("method") not in ("email", "popup") or not 0 <= int(o.get("minutes", -1)) <= 40320:
                raise _bad("invalid", "Invalid reminder.")
        for a in body.get("attendees") or []:
            if not a.get("email"):
                raise _bad("required", "Missing attendee email.")

    def occurrences(self, ev: dict[str, Any], lo: datetime, hi: datetime, cal_tz: str
                    ) -> list[tuple[datetime, datetime, datetime | date]]:
        """[(start, end, original start)] of an event overlapping [lo, hi) (exclusive bounds)."""
        start = self._time(ev["start"], "start", False)
        end = self._time(ev["end"], "end", False)
        tz = ZoneInfo(start[2] or cal_tz)

        def instant(v: datetime | date) -> datetime:
            if isinstance(v, datetime):
                return v
            return datetime.combine(v, datetime.min.time()).replace(tzinfo=tz)

        s0, e0 = instant(start[1]), instant(end[1])
        duration = e0 - s0
        if not ev.get("recurrence"):
            return [(s0, e0, start[1])] if s0 < hi and e0 > lo else []
        rset = self._ruleset(ev["recurrence"], start)
        out = []
        all_day = start[0] == "date"
        after = (lo - duration)
        if all_day:
            after = after.astimezone(tz).replace(tzinfo=None)
        for occ in rset.xafter(after, count=5000, inc=True):
            s = occ.replace(tzinfo=tz) if all_day else occ
            if s >= hi:
                break
            if s + duration > lo:
                out.append((s, s + duration, occ.date() if all_day else occ))
        return out

    def instance_of(self, ev: dict[str, Any], occ: tuple[datetime, datetime, datetime | date]) -> dict[str, Any]:
        s, e, original = occ
        inst = {k: v for k, v in ev.items() if k not in ("recurrence",)}
        tz_name = ev["start"].get("timeZone")
        if isinstance(original, datetime):
            stamp = original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            inst["start"] = {"dateTime": s.isoformat(), **({"timeZone": tz_name} if tz_name else {})}
            inst["end"] = {"dateTime": e.isoformat(), **({"timeZone": ev["end"].get("timeZone")}
                                                         if ev["end"].get("timeZone") else {})}
            inst["originalStartTime"] = {"dateTime": original.isoformat(), **({"timeZone": tz_name} if tz_name else {})}
        else:
            stamp = original.strftime("%Y%m%d")
            inst["start"] = {"date": s.date().isoformat()}
            inst["end"] = {"date": e.date().isoformat()}
            inst["originalStartTime"] = {"date": original.isoformat()}
        inst["id"] = f"{ev['id']}_{stamp}"
        inst["recurringEventId"] = ev["id"]
        return inst

    # ---- notifications ------------------------------------------------------------------------------
    def _google_user(self, email: str) -> bool:
        domain = email.rsplit("@", 1)[-1].lower()
        return email.lower() in self.state.users or domain in self.state.google_domains or any(
            u.rsplit("@", 1)[-1] == domain for u in self.state.users)

    def notify(self, cal: str, ev: dict[str, Any], kind: str, send_updates: str, recipients: list[dict[str, Any]]
               ) -> None:
        for a in recipients:
            email = a.get("email", "")
            if a.get("resource") or a.get("organizer") or email.lower() == cal:
                continue
            if send_updates == "all" or (send_updates == "externalOnly" and not self._google_user(email)):
                self.state.notifications.append({"calendar": cal, "event_id": ev["id"], "kind": kind,
                                                 "recipient": email, "send_updates": send_updates, "at": time.time()})

    # ---- event storage --------------------------------------------------------------------------------
    def _touch(self, ev: dict[str, Any], *, bump_sequence: bool = False) -> None:
        self.state.change_seq += 1
        now = datetime.now(UTC)
        ev["etag"] = f'"{int(now.timestamp() * 1000)}{self.state.change_seq:04d}"'
        ev["updated"] = rfc3339_ms(now)
        ev["_seq"] = self.state.change_seq
        if bump_sequence:
            ev["sequence"] = int(ev.get("sequence", 0)) + 1

    def store(self, cal: str, body: dict[str, Any], params: dict[str, str], organizer: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        now = datetime.now(UTC)
        ev = {k: v for k, v in body.items() if v is not None}
        ev.setdefault("id", new_id())
        user = self.state.users[cal]
        ev.update(kind="calendar#event", status=body.get("status") or "confirmed",
                  htmlLink=f"https://www.google.com/calendar/event?eid={base64.b64encode(ev['id'].encode()).decode()}",
                  created=rfc3339_ms(now), iCalUID=f"{ev['id']}@google.com", sequence=0,
                  creator={"email": user["email"], "self": True},
                  organizer=organizer or {"email": user["email"], "self": True},
                  reminders=body.get("reminders") or {"useDefault": True})
        ev["attendees"] = [{**a, "responseStatus": a.get("responseStatus") or "needsAction"}
                           for a in body.get("attendees") or []]
        if not ev["attendees"]:
            del ev["attendees"]
        self._conference(ev, body, params, None)
        self._touch(ev)
        self.state.calendars[cal][ev["id"]] = ev
        return ev

    @staticmethod
    def _conference(ev: dict[str, Any], body: dict[str, Any], params: dict[str, str], old: dict[str, Any] | None
                    ) -> None:
        # Conference changes persist only with conferenceDataVersion=1 on the modifying request.
        if params.get("conferenceDataVersion") != "1":
            if old is not None and "conferenceData" in old:
                ev["conferenceData"] = old["conferenceData"]
                if old.get("hangoutLink"):
                    ev["hangoutLink"] = old["hangoutLink"]
            else:
                ev.pop("conferenceData", None)
            return
        data = body.get("conferenceData")
        if data is None and "conferenceData" in body:
            ev.pop("conferenceData", None)
            ev.pop("hangoutLink", None)
            return
        request = (data or {}).get("createRequest")
        if request and not (old or {}).get("conferenceData"):
            code = "-".join(new_id(n) for n in (3, 4, 3))
            ev["conferenceData"] = {
                "createRequest": {**request, "status": {"statusCode": "success"}},
                "entryPoints": [{"entryPointType": "video", "uri": f"https://meet.google.com/{code}", "label":
                                 f"meet.google.com/{code}"}],
                "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
                "conferenceId": code}
            ev["hangoutLink"] = f"https://meet.google.com/{code}"

    def render(self, ev: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in ev.items() if not k.startswith("_")}

    def find(self, cal: str, event_id: str) -> dict[str, Any] | None:
        events = self.state.calendars[cal]
        if event_id in events:
            return events[event_id]
        base, _, stamp = event_id.rpartition("_")
        master = events.get(base)
        if master and master.get("recurrence") and stamp:
            user_tz = self.state.users[cal]["time_zone"]
            lo = datetime(1970, 1, 1, tzinfo=UTC)
            hi = datetime(2100, 1, 1, tzinfo=UTC)
            for occ in self.occurrences(master, lo, hi, user_tz):
                inst = self.instance_of(master, occ)
                if inst["id"] == event_id:
                    return inst
        return None

    # ---- routes --------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()
        st = self.state

        async def body_of(request: Request) -> dict[str, Any] | JSONResponse:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                return gerror(400, "parseError", "Parse Error")
            if not isinstance(data, dict):
                return gerror(400, "parseError", "Parse Error")
            return data

        @r.get("/calendar/v3/calendars/{calendar_id}")
        async def get_calendar(calendar_id: str, request: Request) -> Response:
            cal = await self._target(request, READ_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            user = st.users[cal]
            etag = '"' + hashlib.sha256(cal.encode()).hexdigest()[:12] + '"'
            return JSONResponse({"kind": "calendar#calendar", "etag": etag, "id": user["email"],
                                 "summary": user.get("summary") or user["email"], "timeZone": user["time_zone"]})

        @r.post("/calendar/v3/calendars/{calendar_id}/events")
        async def insert(calendar_id: str, request: Request) -> Response:
            cal = await self._target(request, WRITE_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            params = dict(request.query_params)
            if "id" in body:
                eid = str(body["id"])
                if not 5 <= len(eid) <= 1024 or set(eid) - BASE32HEX:
                    return gerror(400, "invalid", "Invalid resource id value.")
                if eid in st.calendars[cal]:
                    return gerror(409, "duplicate", "The requested identifier already exists.")
            try:
                self.validate(body)
            except BadEvent as exc:
                return exc.response
            ev = self.store(cal, body, params)
            send = params.get("sendUpdates") or ("all" if params.get("sendNotifications") == "true" else "none")
            ev["_send_updates"] = send
            self.notify(cal, ev, "invitation", send, ev.get("attendees") or [])
            if st.fail_after_commit > 0:
                st.fail_after_commit -= 1  # the event exists, but the answer is lost
                return gerror(503, "backendError", "Backend Error")
            return JSONResponse(self.render(ev))

        @r.get("/calendar/v3/calendars/{calendar_id}/events/{event_id}")
        async def get_event(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = await self._target(request, READ_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            ev = self.find(cal, event_id)
            if ev is None:
                return gerror(404, "notFound", "Not Found")
            return JSONResponse(self.render(ev))  # cancelled events are returned too

        @r.patch("/calendar/v3/calendars/{calendar_id}/events/{event_id}")
        async def patch(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = await self._target(request, WRITE_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            ev = st.calendars[cal].get(event_id)
            if ev is None:
                return gerror(404, "notFound", "Not Found")
            match = request.headers.get("if-match")
            if match and match != "*" and match != ev["etag"]:
                return gerror(412, "conditionNotMet", "Precondition Failed", location_type="header",
                              location="If-Match")
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            organizer = (ev.get("organizer") or {}).get("email", "").lower()
            if organizer != cal and "shared" in (body.get("extendedProperties") or {}):
                return gerror(403, "forbiddenForNonOrganizer",
                              "Shared properties can only be changed by the organizer of the event.", domain="calendar")
            merged = dict(ev)
            for key, value in body.items():
                if key in ("id", "etag", "kind", "created", "updated", "iCalUID", "htmlLink", "creator", "organizer"):
                    continue
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            try:
                self.validate(merged)
            except BadEvent as exc:
                return exc.response
            params = dict(request.query_params)
            self._conference(merged, body, params, ev)
            before = list(ev.get("attendees") or [])
            if "attendees" in body:
                merged["attendees"] = [{**a, "responseStatus": a.get("responseStatus") or "needsAction"}
                                       for a in body.get("attendees") or []]
            self._touch(merged, bump_sequence=True)
            st.calendars[cal][event_id] = merged
            send = params.get("sendUpdates", "none")
            current = merged.get("attendees") or []
            removed = [a for a in before if a.get("email", "").lower() not in
                       {c.get("email", "").lower() for c in current}]
            self.notify(cal, merged, "update", send, current)
            self.notify(cal, merged, "cancellation", send, removed)
            return JSONResponse(self.render(merged))

        @r.delete("/calendar/v3/calendars/{calendar_id}/events/{event_id}")
        async def delete(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = await self._target(request, WRITE_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            ev = st.calendars[cal].get(event_id)
            if ev is None:
                return gerror(404, "notFound", "Not Found")
            if ev.get("status") == "cancelled":
                return gerror(410, "deleted", "Resource has been deleted")
            match = request.headers.get("if-match")
            if match and match != "*" and match != ev["etag"]:
                return gerror(412, "conditionNotMet", "Precondition Failed", location_type="header",
                              location="If-Match")
            ev["status"] = "cancelled"
            self._touch(ev, bump_sequence=True)
            self.notify(cal, ev, "cancellation", request.query_params.get("sendUpdates", "none"),
                        ev.get("attendees") or [])
            return Response(status_code=204)

        @r.get("/calendar/v3/calendars/{calendar_id}/events")
        async def list_events(calendar_id: str, request: Request) -> Response:
            cal = await self._target(request, READ_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            return self._list(cal, dict(request.query_params), None)

        @r.get("/calendar/v3/calendars/{calendar_id}/events/{event_id}/instances")
        async def instances(calendar_id: str, event_id: str, request: Request) -> Response:
            cal = await self._target(request, READ_SCOPES, calendar_id)
            if isinstance(cal, JSONResponse):
                return cal
            ev = st.calendars[cal].get(event_id)
            if ev is None or not ev.get("recurrence"):
                return gerror(404, "notFound", "Not Found")
            return self._list(cal, dict(request.query_params), ev)

        @r.post("/calendar/v3/freeBusy")
        async def free_busy(request: Request) -> Response:
            tok = await self._guard(request, FREEBUSY_SCOPES | READ_SCOPES)
            if isinstance(tok, JSONResponse):
                return tok
            body = await body_of(request)
            if isinstance(body, JSONResponse):
                return body
            return self._free_busy(body)

        @r.get("/authorize")
        async def authorize(request: Request) -> Response:
            return self._authorize(dict(request.query_params))

        @r.post("/revoke")
        async def revoke_grant(request: Request) -> Response:
            """Google's revoke endpoint: a refresh token ends the grant and the access tokens issued for it."""
            form = await request.form()
            token = str(form.get("token") or request.query_params.get("token") or "")
            rec = self.state.refresh.get(token)
            if rec is not None and not rec["revoked"]:
                rec["revoked"] = True
                for acc in self.state.access.values():
                    if acc.email == rec["email"] and acc.client_id == rec["client_id"]:
                        acc.expires_at = 0
                return JSONResponse({})
            live = self.state.access.get(token)
            if live is not None and live.expires_at > time.time():
                live.expires_at = 0
                return JSONResponse({})
            return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"},
                                status_code=400)

        @r.post("/token")
        async def token(request: Request) -> Response:
            return await self._token(request)

        return r

    # ---- list / instances ----------------------------------------------------------------------------
    def _parse_bound(self, value: str | None, name: str) -> datetime | JSONResponse | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:  # "with mandatory time zone offset"
            return gerror(400, "badRequest", "Bad Request", location_type="parameter", location=name)
        return parsed

    def _list(self, cal: str, q: dict[str, str], master: dict[str, Any] | None) -> Response:
        st = self.state
        user_tz = st.users[cal]["time_zone"]
        sync_token = q.get("syncToken")
        if sync_token and any(k in q for k in ("timeMin", "timeMax", "orderBy", "q", "iCalUID", "updatedMin",
                                               "privateExtendedProperty", "sharedExtendedProperty")):
            return gerror(400, "invalid", "Sync token cannot be used with other request restrictions.",
                          location_type="parameter", location="syncToken")
        lo = self._parse_bound(q.get("timeMin"), "timeMin")
        hi = self._parse_bound(q.get("timeMax"), "timeMax")
        for bound in (lo, hi):
            if isinstance(bound, JSONResponse):
                return bound
        assert not isinstance(lo, JSONResponse) and not isinstance(hi, JSONResponse)
        if lo and hi and lo >= hi:
            return gerror(400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar",
                          location_type="parameter", location="timeMax")
        single = q.get("singleEvents") == "true"
        if q.get("orderBy") == "startTime" and not single and master is None:
            return gerror(400, "badRequest", "The requested ordering is not available for the particular query.",
                          location_type="parameter", location="orderBy")
        try:
            max_results = min(int(q.get("maxResults", "250")), 2500)
        except ValueError:
            return gerror(400, "invalidParameter", "Invalid value for maxResults", location_type="parameter",
                          location="maxResults")
        lo_eff = lo or datetime(1970, 1, 1, tzinfo=UTC)
        hi_eff = hi or datetime(2100, 1, 1, tzinfo=UTC)
        since = 0
        if sync_token:
            try:
                tok_cal, epoch, seq = sync_token.rsplit(":", 2)
                since = int(seq)
                if tok_cal != cal or int(epoch) != st.sync_epoch[cal]:
                    raise ValueError
            except ValueError:
                return gerror(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.",
                              domain="calendar", location_type="parameter", location="syncToken")
        show_deleted = bool(sync_token) or q.get("showDeleted") == "true"
        items: list[tuple[datetime, dict[str, Any]]] = []
        sources = [master] if master is not None else list(st.calendars[cal].values())
        for ev in sources:
            if sync_token:
                if ev["_seq"] > since:
                    items.append((datetime.min.replace(tzinfo=UTC), ev if ev.get("status") != "cancelled"
                                  else {"kind": "calendar#event", "id": ev["id"], "etag": ev["etag"],
                                        "status": "cancelled"}))
                continue
            if ev.get("status") == "cancelled" and not show_deleted:
                continue
            expand = master is not None or single
            if expand and ev.get("recurrence"):
                for occ in self.occurrences(ev, lo_eff, hi_eff, user_tz):
                    items.append((occ[0], self.instance_of(ev, occ)))
            else:
                occ_list = self.occurrences(ev, lo_eff, hi_eff, user_tz)
                if occ_list:
                    items.append((occ_list[0][0], ev))
        items.sort(key=lambda pair: pair[0])
        offset = int(q.get("pageToken", "0") or 0) if (q.get("pageToken") or "0").isdigit() else 0
        page = items[offset: offset + max_results]
        out: dict[str, Any] = {"kind": "calendar#events", "etag": f'"{st.change_seq}"',
                               "summary": st.users[cal]["email"], "timeZone": q.get("timeZone") or user_tz,
                               "updated": rfc3339_ms(datetime.now(UTC)), "accessRole": "owner",
                               "defaultReminders": [{"method": "popup", "minutes": 10}],
                               "items": [self.render(ev) for _, ev in page]}
        if offset + max_results < len(items):
            out["nextPageToken"] = str(offset + max_results)
        else:
            # Only the last page carries nextSyncToken.
            out["nextSyncToken"] = f"{cal}:{st.sync_epoch[cal]}:{st.change_seq}"
        return JSONResponse(out)

    # ---- freeBusy --------------------------------------------------------------------------------------
    def _free_busy(self, body: dict[str, Any]) -> Response:
        st = self.state
        lo = self._parse_bound(body.get("timeMin"), "timeMin") if body.get("timeMin") else None
        hi = self._parse_bound(body.get("timeMax"), "timeMax") if body.get("timeMax") else None
        if lo is None or hi is None:
            return gerror(400, "required", "Missing time range.")
        if isinstance(lo, JSONResponse):
            return lo
        if isinstance(hi, JSONResponse):
            return hi
        if hi <= lo:
            return gerror(400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar",
                          location_type="parameter", location="timeMax")
        tz = ZoneInfo(body.get("timeZone") or "UTC")

        def fmt(t: datetime) -> str:
            local = t.astimezone(tz)
            return local.strftime("%Y-%m-%dT%H:%M:%SZ") if tz.key == "UTC" else local.isoformat()

        calendars: dict[str, Any] = {}
        for i, item in enumerate(body.get("items") or []):
            cid = str(item.get("id", ""))
            if i >= 50:
                calendars[cid] = {"errors": [{"domain": "calendar", "reason": "tooManyCalendarsRequested"}],
                                  "busy": []}
                continue
            cal = cid.lower()
            if cal not in st.users:
                calendars[cid] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                continue
            spans: list[tuple[datetime, datetime]] = []
            for ev in st.calendars[cal].values():
                if ev.get("status") == "cancelled" or ev.get("transparency") == "transparent":
                    continue
                for s, e, _ in self.occurrences(ev, lo, hi, st.users[cal]["time_zone"]):
                    spans.append((max(s, lo), min(e, hi)))
            merged: list[tuple[datetime, datetime]] = []
            for s, e in sorted(spans):
                if merged and s <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], e))
                else:
                    merged.append((s, e))
            calendars[cid] = {"busy": [{"start": fmt(s), "end": fmt(e)} for s, e in merged]}
        return JSONResponse({"kind": "calendar#freeBusy", "timeMin": rfc3339_ms(lo), "timeMax": rfc3339_ms(hi),
                             "calendars": calendars})

    # ---- OAuth ---------------------------------------------------------------------------------------
    def _authorize(self, q: dict[str, str]) -> Response:
        client = self.state.clients.get(q.get("client_id", ""))
        if client is None:
            return JSONResponse({"error": "invalid_client", "error_description": "The OAuth client was not found."},
                                status_code=401)
        if q.get("redirect_uri") not in client["redirect_uris"]:
            return JSONResponse({"error": "redirect_uri_mismatch",
                                 "error_description": "The redirect URI in the request does not match."},
                                status_code=400)
        if q.get("response_type") != "code" or q.get("code_challenge_method", "S256") != "S256" \
                or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 code challenge required"},
                                status_code=400)
        email = (q.get("login_hint") or self.state.default_user or "").lower()
        if email not in self.state.users:
            denied = urlencode({"error": "access_denied", "state": q.get("state", "")})
            return RedirectResponse(f"{q['redirect_uri']}?{denied}", status_code=302)
        code = "4/0sandbox-" + secrets.token_urlsafe(24)
        self.state.codes[code] = {"client_id": q["client_id"], "redirect_uri": q["redirect_uri"], "email": email,
                                  "scopes": set((q.get("scope") or "").split()), "challenge": q["code_challenge"],
                                  "expires": time.time() + 600}
        query = urlencode({"code": code, "state": q.get("state", ""), "scope": q.get("scope", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    async def _token(self, request: Request) -> Response:
        st = self.state
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return JSONResponse({"error": "invalid_request", "error_description": "Invalid Content-Type"},
                                status_code=400)
        form = dict((await request.form()).items())
        st.token_requests.append({"grant_type": form.get("grant_type"), "at": time.time()})
        if st.token_faults:
            fault = st.token_faults.pop(0)
            if fault.get("error"):
                return JSONResponse({"error": fault["error"]}, status_code=int(fault.get("status", 500)))
            return JSONResponse({"error": "internal_failure"}, status_code=int(fault.get("status", 503)))
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            return self._jwt_grant(str(form.get("assertion", "")))
        client = st.clients.get(str(form.get("client_id", "")))
        if client is None or client["client_secret"] != form.get("client_secret"):
            return JSONResponse({"error": "invalid_client", "error_description": "Unauthorized"}, status_code=401)
        if grant == "refresh_token":
            rec = st.refresh.get(str(form.get("refresh_token", "")))
            if rec is None or rec["revoked"] or rec["client_id"] != form["client_id"]:
                return JSONResponse(INVALID_GRANT, status_code=400)
            return JSONResponse(self._issue(rec["email"], rec["client_id"], self._project_of(rec["client_id"]),
                                            rec["scopes"]))
        if grant == "authorization_code":
            rec = st.codes.pop(str(form.get("code", "")), None)
            if rec is None or rec["expires"] < time.time() or rec["client_id"] != form["client_id"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "Malformed auth code."},
                                    status_code=400)
            if rec["redirect_uri"] != form.get("redirect_uri"):
                return JSONResponse({"error": "redirect_uri_mismatch", "error_description": "Bad Request"},
                                    status_code=400)
            verifier = str(form.get("code_verifier", ""))
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if not verifier or expected != rec["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid code verifier."},
                                    status_code=400)
            out = self._issue(rec["email"], rec["client_id"], self._project_of(rec["client_id"]), rec["scopes"])
            refresh = "1//sandbox-" + secrets.token_urlsafe(32)
            st.refresh[refresh] = {"email": rec["email"], "client_id": rec["client_id"], "scopes": rec["scopes"],
                                   "revoked": False}
            return JSONResponse({**out, "refresh_token": refresh})
        return JSONResponse({"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant}"},
                            status_code=400)

    def _jwt_grant(self, assertion: str) -> Response:
        """Service-account grant: the JWT is verified with the account's public key; `aud` is not checked
        (google-auth always sends https://oauth2.googleapis.com/token, whatever the token URI)."""
        st = self.state
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            sa = st.service_accounts[str(unverified.get("iss"))]
            claims = jwt.decode(assertion, sa["public_key_pem"], algorithms=["RS256"], options={"verify_aud": False})
        except (jwt.PyJWTError, KeyError):
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                                status_code=400)
        scopes = set(str(claims.get("scope", "")).split())
        subject = claims.get("sub")
        if subject and subject != claims.get("iss"):
            if not sa["domain_wide_delegation"] or not scopes <= set(sa["scopes"]):
                return JSONResponse({"error": "unauthorized_client", "error_description":
                                     "Client is unauthorized to retrieve access tokens using this method, or client "
                                     "not authorized for any of the scopes requested."}, status_code=401)
            if str(subject).lower() not in st.users:
                return JSONResponse({"error": "invalid_grant", "error_description": "Invalid email or User ID"},
                                    status_code=400)
            return JSONResponse(self._issue(str(subject).lower(), sa["client_email"], sa["project"], scopes))
        return JSONResponse(self._issue(None, sa["client_email"], sa["project"], scopes))

    # ---- controls ------------------------------------------------------------------------------------
    def control_router(self) -> APIRouter:
        r = APIRouter()
        st = self.state

        @r.post("/clients")
        async def add_client(cfg: ClientConfig) -> dict[str, Any]:
            st.clients[cfg.client_id] = cfg.model_dump()
            return {"ok": True}

        @r.post("/users")
        async def add_user(cfg: UserConfig) -> dict[str, Any]:
            st.users[cfg.email.lower()] = cfg.model_dump()
            st.default_user = st.default_user or cfg.email.lower()
            return {"ok": True}

        @r.post("/service_accounts")
        async def add_sa(cfg: ServiceAccountConfig) -> dict[str, Any]:
            st.service_accounts[cfg.client_email] = cfg.model_dump()
            return {"ok": True}

        @r.post("/tokens")
        async def issue(req: TokenRequest) -> dict[str, Any]:
            email = req.email.lower()
            out = self._issue(email, req.client_id, self._project_of(req.client_id), set(req.scopes), req.expires_in)
            refresh = "1//sandbox-" + secrets.token_urlsafe(32)
            st.refresh[refresh] = {"email": email, "client_id": req.client_id, "scopes": set(req.scopes),
                                   "revoked": False}
            return {**out, "refresh_token": refresh}

        @r.post("/tokens/revoke")
        async def revoke(body: dict[str, str]) -> dict[str, Any]:
            rec = st.refresh.get(body.get("refresh_token", ""))
            if rec:
                rec["revoked"] = True
            return {"ok": rec is not None}

        @r.post("/tokens/expire")
        async def expire(body: dict[str, str]) -> dict[str, Any]:
            tok = st.access.get(body.get("access_token", ""))
            if tok:
                tok.expires_at = 0
            return {"ok": tok is not None}

        @r.post("/token_faults")
        async def token_faults(body: dict[str, Any]) -> dict[str, Any]:
            st.token_faults.extend([{"status": body.get("status", 503), "error": body.get("error")}]
                                   * int(body.get("count", 1)))
            return {"ok": True}

        @r.put("/quota")
        async def quota(cfg: QuotaConfig) -> dict[str, Any]:
            st.quota_per_user, st.quota_per_project = cfg.per_user, cfg.per_project
            st.quota_period, st.throttle_status = cfg.period, cfg.throttle_status
            st.user_log.clear()
            st.project_log.clear()
            return {"ok": True}

        @r.post("/quota_exceeded")
        async def quota_exceeded(body: dict[str, Any]) -> dict[str, Any]:
            email = str(body.get("email", "")).lower()
            if body.get("on", True):
                st.quota_exceeded.add(email)
            else:
                st.quota_exceeded.discard(email)
            return {"ok": True}

        @r.post("/google_domains")
        async def google_domains(body: dict[str, list[str]]) -> dict[str, Any]:
            st.google_domains |= {d.lower() for d in body.get("domains", [])}
            return {"ok": True}

        @r.post("/fail_after_commit")
        async def fail_after_commit(body: dict[str, int]) -> dict[str, Any]:
            st.fail_after_commit = int(body.get("count", 1))
            return {"ok": True}

        @r.post("/calendars/{calendar}/events")
        async def seed_event(calendar: str, body: dict[str, Any]) -> Response:
            cal = calendar.lower()
            if cal not in st.users:
                return JSONResponse({"error": "unknown calendar"}, status_code=404)
            try:
                self.validate(body)
            except BadEvent as exc:
                return exc.response
            organizer = body.pop("organizer", None)
            ev = self.store(cal, body, {"conferenceDataVersion": "1"}, organizer=organizer)
            return JSONResponse(self.render(ev))

        @r.get("/calendars/{calendar}/events")
        async def dump_events(calendar: str) -> list[dict[str, Any]]:
            return [self.render(ev) for ev in st.calendars[calendar.lower()].values()]

        @r.post("/calendars/{calendar}/sync/invalidate")
        async def invalidate(calendar: str) -> dict[str, Any]:
            st.sync_epoch[calendar.lower()] += 1
            return {"ok": True}

        @r.get("/notifications")
        async def notifications(event_id: str | None = None) -> list[dict[str, Any]]:
            return [n for n in st.notifications if event_id is None or n["event_id"] == event_id]

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            return {"throttled": st.throttled, "token_requests": len(st.token_requests),
                    "token_grants": [t["grant_type"] for t in st.token_requests]}

        return r
