"""Microsoft Graph (Outlook calendar) + Entra token endpoint fakes.

Graph: 201 on create (transactionId deduplicates), 200 on PATCH with If-Match on the @odata.etag
(W/"changeKey"; a stale one gets 412), 204 on DELETE and 404 after, offset-less dateTime with 7
fractional digits in the `Prefer: outlook.timezone` zone (UTC otherwise, Preference-Applied echoed),
calendarView expanding series with the query's offsets honoured, instances, getSchedule with
availabilityView digits 0-4 (≤20 schedules, <62 days), OData error bodies, and the per-app-and-mailbox
budget (10,000 per 10 minutes, 4 concurrent) answered with 429 TooManyRequests/ApplicationThrottled
and a Retry-After that may be fractional or absent.

Entra: the v2.0 discovery document (endpoints on the public https authority host, which the client's
routed HTTP session maps here), authorize (PKCE), and a token endpoint for authorization codes,
rotating refresh tokens and client credentials with AADSTS error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

import httpx
from dateutil import rrule as du
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from tzlocal.windows_tz import tz_win, win_tz

from sandbox import transport
from sandbox.state import SandboxState

GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
MEETING_FIELDS = {"subject", "body", "location", "start", "end", "attendees", "recurrence", "isOnlineMeeting",
                  "isAllDay"}
AV_DIGIT = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingElsewhere": "4"}
# Which status wins when several items overlap one availabilityView interval.
AV_RANK = {"0": 0, "4": 1, "1": 2, "2": 3, "3": 4}


def odata_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Graph's OData v4 error body with innerError request-id and date."""
    return JSONResponse({"error": {"code": code, "message": message, "innerError": {
        "request-id": str(uuid.uuid4()), "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "client-request-id": str(uuid.uuid4())}}}, status_code=status, headers=headers)


def graph_dt(t: datetime) -> str:
    """Offset-less, 7 fractional digits: 2017-04-15T11:00:00.0000000."""
    return t.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def graph_instant(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def resolve_zone(name: str | None) -> ZoneInfo | None:
    """A Graph zone name (Windows, or an IANA name Graph knows) as a ZoneInfo; None when unsupported."""
    if not name:
        return None
    if name in win_tz:
        return ZoneInfo(win_tz[name])
    if name in tz_win and name in available_timezones():
        return ZoneInfo(name)
    return None


def parse_local(value: str) -> datetime:
    text = str(value).removesuffix("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.response = odata_error(status, code, message)


@dataclass
class GraphToken:
    user: str | None  # None: an application token
    client_id: str
    tenant: str
    scopes: set[str]
    roles: set[str]
    expires_at: float


@dataclass
class GraphFakeState:
    mailboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    transactions: dict[tuple[str, str], str] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, GraphToken] = field(default_factory=dict)
    budget: int = 10_000
    period: float = 600.0
    concurrency: int = 4
    retry_after: str | None = "2.128"  # fractional by default, like the docs' sample; None = absent
    hold_ms: float = 0.0
    windows: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    inflight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_inflight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    throttled: int = 0
    fail_after_commit: int = 0


@dataclass
class EntraFakeState:
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    public_host: str = "https://login.microsoftonline.com"
    default_user: str | None = None
    # Tenants the fake knows; an app registered in one is multi-tenant (usable in any known tenant).
    tenants: set[str] = field(default_factory=set)


class MailboxConfig(BaseModel):
    email: str
    display_name: str | None = None
    time_zone: str = "UTC"
    working_hours: dict[str, Any] | None = None
    rest_enabled: bool = True


class LimitsConfig(BaseModel):
    budget: int = 10_000
    period: float = 600.0
    concurrency: int = 4
    retry_after: str | None = "2.128"
    hold_ms: float = 0.0


class AppConfig(BaseModel):
    client_id: str
    client_secret: str
    tenant: str
    redirect_uris: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=lambda: ["Calendars.ReadWrite"])
    strict_rotation: bool = True


class IssueRequest(BaseModel):
    user: str
    client_id: str
    tenant: str
    scopes: list[str] = Field(default_factory=lambda: ["Calendars.ReadWrite", "User.Read"])
    expires_in: int = 3599


class GraphFake:
    """Routes under /graph (Graph v1.0 at /graph/v1.0)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = GraphFakeState()

    # ---- auth, mailbox, budget ---------------------------------------------------------------------
    def _token(self, request: Request) -> GraphToken | JSONResponse:
        auth = request.headers.get("authorization", "")
        tok = self.state.tokens.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if tok is None:
            return odata_error(401, "InvalidAuthenticationToken",
                               "CompactToken parsing failed with error code: 80049217")
        if tok.expires_at <= time.time():
            return odata_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        return tok

    def _mailbox(self, tok: GraphToken, segs: list[str]) -> tuple[str, list[str]] | JSONResponse:
        if segs and segs[0] == "me":
            if tok.user is None:
                return odata_error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            who, rest = tok.user, segs[1:]
        elif len(segs) >= 2 and segs[0] == "users":
            who, rest = segs[1].lower(), segs[2:]
            if tok.user is not None and who != tok.user:
                return odata_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            if tok.user is None and not ({"Calendars.ReadWrite", "Calendars.Read"} & tok.roles):
                return odata_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        else:
            return odata_error(400, "BadRequest", "Resource not found for the segment.")
        box = self.state.mailboxes.get(who)
        if box is None:
            return odata_error(404, "ErrorInvalidUser", f"The requested user '{who}' is invalid.")
        if not box["rest_enabled"]:
            return odata_error(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, "
                               "or is hosted on-premise.")
        return who, rest

    def _throttle(self, key: str) -> JSONResponse | None:
        st = self.state
        now = self.sandbox.arrival()  # counted when the request reached Graph
        log = st.windows[key]
        while log and log[0] <= now - st.period:
            log.popleft()
        headers = {"Retry-After": st.retry_after} if st.retry_after is not None else None
        if len(log) >= st.budget:
            st.throttled += 1
            return JSONResponse({"error": {"code": "TooManyRequests", "innerError": {
                "code": "429", "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "message": "Please retry after",
                "request-id": str(uuid.uuid4()), "status": "429"}, "message": "Please retry again later."}},
                status_code=429, headers=headers)
        if st.inflight[key] >= st.concurrency:
            st.throttled += 1
            return odata_error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                               headers=headers)
        log.append(now)
        return None

    # ---- event model ----------------------------------------------------------------------------------
    def _zone(self, name: Any, what: str) -> ZoneInfo:
        tz = resolve_zone(name if isinstance(name, str) else None)
        if tz is None:
            raise BadRequest("TimeZoneNotSupportedException", "A valid TimeZone value must be specified. The "
                             f"following TimeZone value is not supported: '{name}'.")
        return tz

    def _bounds(self, ev: dict[str, Any]) -> tuple[datetime, datetime]:
        s_tz, e_tz = self._zone(ev["start"]["timeZone"], "start"), self._zone(ev["end"]["timeZone"], "end")
        s = parse_local(ev["start"]["dateTime"]).replace(tzinfo=s_tz, fold=0)
        e = parse_local(ev["end"]["dateTime"]).replace(tzinfo=e_tz, fold=0)
        return s, e

    def validate(self, ev: dict[str, Any]) -> None:
        for which in ("start", "end"):
            t = ev.get(which)
            if not isinstance(t, dict) or not t.get("dateTime") or not t.get("timeZone"):
                raise BadRequest("ErrorInvalidRequest", f"Your request can't be completed. The {which} time is "
                                 "missing or incomplete.")
            self._zone(t["timeZone"], which)
            try:
                parse_local(t["dateTime"])
            except ValueError:
                raise BadRequest("ErrorInvalidRequest", f"Cannot convert the literal '{t['dateTime']}'.") from None
        s, e = self._bounds(ev)
        if e <= s:
            raise BadRequest("ErrorInvalidRequest", "The end time must be later than the start time.")
        if ev.get("isAllDay"):
            ls, le = parse_local(ev["start"]["dateTime"]), parse_local(ev["end"]["dateTime"])
            if ls.time() != datetime.min.time() or le.time() != datetime.min.time() \
                    or ev["start"]["timeZone"] != ev["end"]["timeZone"]:
                raise BadRequest("ErrorPropertyValidationFailure", "At least one property failed validation.")
        if len(ev.get("attendees") or []) > 500:
            raise BadRequest("ErrorInvalidRequest", "An event can have at most 500 attendees.")
        if ev.get("recurrence"):
            self._rrule(ev)  # raises on an invalid pattern or range

    def _rrule(self, ev: dict[str, Any]) -> du.rrule:
        """The series as a dateutil rule, built from pattern/range directly (independent of the client's
        RRULE text translation)."""
        rec = ev["recurrence"]
        pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
        try:
            kind = pattern["type"]
            interval = int(pattern["interval"])
            if interval < 1:
                raise ValueError("interval")
            days = [GRAPH_DAYS.index(d.lower()) for d in pattern.get("daysOfWeek") or []]
            s_local = parse_local(ev["start"]["dateTime"])
            tz = self._zone(ev["start"]["timeZone"], "start")
            start_date = date.fromisoformat(rng["startDate"])
            if start_date != s_local.date():
                raise ValueError("startDate")
            kw: dict[str, Any] = {"interval": interval, "wkst": GRAPH_DAYS.index(
                (pattern.get("firstDayOfWeek") or "sunday").lower())}
            freq: int
            if kind == "daily":
                freq = du.DAILY
            elif kind == "weekly":
                if not days:
                    raise ValueError("daysOfWeek")
                freq, kw["byweekday"] = du.WEEKLY, days
            elif kind in ("absoluteMonthly", "absoluteYearly"):
                freq = du.MONTHLY if kind == "absoluteMonthly" else du.YEARLY
                kw["bymonthday"] = int(pattern["dayOfMonth"])
            elif kind in ("relativeMonthly", "relativeYearly"):
                if not days:
                    raise ValueError("daysOfWeek")
                freq = du.MONTHLY if kind == "relativeMonthly" else du.YEARLY
                kw["byweekday"] = days
                kw["bysetpos"] = INDEX[(pattern.get("index") or "first").lower()]
            else:
                raise ValueError("type")
            if kind.endswith("Yearly"):
                kw["bymonth"] = int(pattern["month"])
            rtype = rng.get("type")
            if rtype == "numbered":
                kw["count"] = int(rng["numberOfOccurrences"])
                if kw["count"] < 1:
                    raise ValueError("numberOfOccurrences")
            elif rtype == "endDate":
                end_day = date.fromisoformat(rng["endDate"])
                kw["until"] = datetime.combine(end_day, datetime.max.time().replace(microsecond=0), tzinfo=tz)
            elif rtype != "noEnd":
                raise ValueError("range type")
            return du.rrule(freq, dtstart=s_local.replace(tzinfo=tz), **kw)  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError) as exc:
            raise BadRequest("ErrorPropertyValidationFailure",
                             f"At least one property failed validation. ({exc})") from None

    def occurrences(self, ev: dict[str, Any], lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        s, e = self._bounds(ev)
        if not ev.get("recurrence"):
            return [(s, e)] if s < hi and e > lo else []
        duration = e - s
        out = []
        for occ in self._rrule(ev).xafter(lo - duration, count=5000, inc=True):
            if occ >= hi:
                break
            if occ + duration > lo:
                out.append((occ, occ + duration))
        return out

    def render(self, ev: dict[str, Any], tz_name: str | None, *, occ: tuple[datetime, datetime] | None = None
               ) -> dict[str, Any]:
        """An event as Graph returns it: times in the Prefer zone (UTC when none), 7 fractional digits."""
        out = {k: v for k, v in ev.items() if not k.startswith("_")}
        target = resolve_zone(tz_name) if tz_name else None
        label = tz_name if target is not None else "UTC"
        target = target or ZoneInfo("UTC")
        s, e = occ or self._bounds(ev)
        if ev.get("isAllDay"):
            # All-day events are floating dates: midnight in whatever zone is asked for.
            out["start"] = {"dateTime": f"{s.date().isoformat()}T00:00:00.0000000", "timeZone": label}
            out["end"] = {"dateTime": f"{e.date().isoformat()}T00:00:00.0000000", "timeZone": label}
        else:
            out["start"] = {"dateTime": graph_dt(s.astimezone(target)), "timeZone": label}
            out["end"] = {"dateTime": graph_dt(e.astimezone(target)), "timeZone": label}
        if occ is not None:
            out.pop("recurrence", None)
            out.update(id=f"{ev['id']}_OCC_{occ[0].astimezone(UTC).strftime('%Y%m%dT%H%M%S')}", type="occurrence",
                       seriesMasterId=ev["id"], originalStart=graph_instant(occ[0]),
                       iCalUId=hashlib.sha256(f"{ev['iCalUId']}{occ[0]}".encode()).hexdigest().upper())
        return out

    def _change(self, ev: dict[str, Any]) -> None:
        ck = base64.b64encode(secrets.token_bytes(16)).decode()
        ev["changeKey"] = ck
        ev["@odata.etag"] = f'W/"{ck}"'
        ev["lastModifiedDateTime"] = graph_instant(datetime.now(UTC))

    def create(self, box: str, body: dict[str, Any]) -> dict[str, Any]:
        self.validate(body)
        mailbox = self.state.mailboxes[box]
        now = datetime.now(UTC)
        ev: dict[str, Any] = {
            "id": "AAMkAG" + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("="),
            "createdDateTime": graph_instant(now),
            "iCalUId": "040000008200E00074C5B7101A82E008" + secrets.token_hex(24).upper(),
            "subject": body.get("subject") or "",
            "body": body.get("body") or {"contentType": "text", "content": ""},
            "bodyPreview": str((body.get("body") or {}).get("content") or "")[:255],
            "start": body["start"], "end": body["end"],
            "originalStartTimeZone": body["start"]["timeZone"], "originalEndTimeZone": body["end"]["timeZone"],
            "isAllDay": bool(body.get("isAllDay")),
            "location": body.get("location") or {"displayName": ""},
            "attendees": [{"type": a.get("type") or "required", "status": {"response": "none",
                                                                           "time": "0001-01-01T00:00:00Z"},
                           "emailAddress": a.get("emailAddress") or {}} for a in body.get("attendees") or []],
            "organizer": {"emailAddress": {"name": mailbox.get("display_name") or box, "address": mailbox["email"]}},
            "isOrganizer": True, "responseRequested": True,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "showAs": body.get("showAs") or "busy",
            "isReminderOn": body.get("isReminderOn", True),
            "reminderMinutesBeforeStart": body.get("reminderMinutesBeforeStart", 15),
            "isCancelled": False,
            "isOnlineMeeting": bool(body.get("isOnlineMeeting")),
            "onlineMeetingProvider": body.get("onlineMeetingProvider") or "unknown",
            "recurrence": body.get("recurrence"),
            "type": "seriesMaster" if body.get("recurrence") else "singleInstance",
            "webLink": "https://outlook.office365.com/owa/?itemid=sandbox",
            "transactionId": body.get("transactionId"),
        }
        if ev["isOnlineMeeting"]:
            ev["onlineMeeting"] = {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/{secrets.token_hex(12)}"}
        self._change(ev)
        self.state.events[box][ev["id"]] = ev
        return ev

    def notify(self, box: str, ev: dict[str, Any], kind: str, attendees: list[dict[str, Any]]) -> None:
        for a in attendees:
            email = (a.get("emailAddress") or {}).get("address", "")
            if not email or email.lower() == box or a.get("type") == "resource":
                continue
            self.state.notifications.append({"mailbox": box, "event_id": ev["id"], "kind": kind, "recipient": email,
                                             "at": time.time()})

    def find(self, box: str, event_id: str) -> tuple[dict[str, Any], tuple[datetime, datetime] | None] | None:
        events = self.state.events[box]
        if event_id in events:
            return events[event_id], None
        base, sep, stamp = event_id.partition("_OCC_")
        master = events.get(base)
        if sep and master and master.get("recurrence"):
            for occ in self.occurrences(master, datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)):
                if occ[0].astimezone(UTC).strftime("%Y%m%dT%H%M%S") == stamp:
                    return master, occ
        return None

    # ---- routes ----------------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter()

        @r.post("/v1.0/$batch")  # before the catch-all route below
        async def batch(request: Request) -> Response:
            return await self.batch(request)

        @r.api_route("/v1.0/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
        async def graph(path: str, request: Request) -> Response:
            fault = await self.sandbox.fault_for("graph")
            cfg = self.sandbox.faults.get("graph")
            fault_headers = {"Retry-After": str(cfg.retry_after)} if cfg and cfg.retry_after is not None else None
            if fault in ("outage", "5xx"):
                return odata_error(503, "serviceNotAvailable", "Service unavailable", headers=fault_headers)
            if fault == "429":
                return odata_error(429, "TooManyRequests", "Please retry again later.", headers=fault_headers)
            tok = self._token(request)
            if isinstance(tok, JSONResponse):
                return tok
            found = self._mailbox(tok, [s for s in path.split("/") if s])
            if isinstance(found, JSONResponse):
                return found
            box, rest = found
            key = f"{tok.client_id}:{box}"
            throttled = self._throttle(key)
            if throttled is not None:
                return throttled
            st = self.state
            st.inflight[key] += 1
            st.max_inflight[key] = max(st.max_inflight[key], st.inflight[key])
            try:
                if st.hold_ms:
                    await asyncio.sleep(st.hold_ms / 1000)  # lets concurrent requests overlap visibly
                return await self._dispatch(request, tok, box, rest)
            except BadRequest as exc:
                return exc.response
            finally:
                st.inflight[key] -= 1

        return r

    async def batch(self, request: Request) -> Response:
        """JSON batching: up to 20 requests, each run (and throttled) like a request of its own."""
        tok = self._token(request)
        if isinstance(tok, JSONResponse):
            return tok
        try:
            doc = json.loads(await request.body() or b"{}")
        except ValueError:
            return odata_error(400, "BadRequest", "Unable to read JSON request payload.")
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return odata_error(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > 20:
            return odata_error(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
        ids = [str(q.get("id", "")) for q in reqs if isinstance(q, dict)]
        if len(ids) != len(reqs) or "" in ids or len(set(ids)) != len(ids):
            return odata_error(400, "BadRequest", "Batch requests need unique, non-empty ids.")
        out = []
        # Each request goes through the app again (routing, auth, throttling, the recorder), in order.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=request.app),
                                     base_url=str(request.base_url)) as inner:
            for q in reqs:
                url = str(q.get("url") or "")
                if not url.startswith("/"):
                    url = "/" + url
                headers = {"Authorization": request.headers.get("authorization", ""),
                           transport.INTERNAL_HEADER: "batch",
                           **{str(k): str(v) for k, v in (q.get("headers") or {}).items()}}
                resp = await inner.request(str(q.get("method") or "GET").upper(), f"/graph/v1.0{url}",
                                           headers=headers, json=q.get("body") if "body" in q else None)
                body: Any = resp.json() if resp.content else None
                out.append({"id": str(q["id"]), "status": resp.status_code, "body": body,
                            "headers": {k: v for k, v in resp.headers.items()
                                        if k.lower() in ("retry-after", "location", "preference-applied")}})
        return JSONResponse({"responses": out})

    async def _dispatch(self, request: Request, tok: GraphToken, box: str, rest: list[str]) -> Response:
        method = request.method
        prefer = request.headers.get("prefer", "")
        tz_name = None
        if "outlook.timezone=" in prefer:
            tz_name = prefer.split("outlook.timezone=", 1)[1].split(",", 1)[0].strip().strip('"')
            if resolve_zone(tz_name) is None:
                tz_name = None
        headers = {"Preference-Applied": f'outlook.timezone="{tz_name}"'} if tz_name else {}

        def reply(data: Any, status: int = 200) -> JSONResponse:
            return JSONResponse(data, status_code=status, headers=headers)

        if method == "GET" and not rest:
            mb = self.state.mailboxes[box]
            return reply({"id": hashlib.md5(box.encode()).hexdigest(), "displayName": mb.get("display_name"),  # noqa: S324
                          "mail": mb["email"], "userPrincipalName": mb["email"]})
        body: dict[str, Any] = {}
        if method in ("POST", "PATCH"):
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return odata_error(400, "BadRequest", "Unable to read JSON request payload.")
        # POST .../events | .../calendar/events | .../calendars/{id}/events
        if method == "POST" and rest and rest[-1] == "events" and len(rest) in (1, 2, 3):
            return self._create(box, body, tz_name, reply)
        if method == "POST" and rest == ["calendar", "getSchedule"]:
            return reply(self._schedule(box, body, tz_name))
        if method == "GET" and rest and rest[-1] == "calendarView":
            return self._view(request, box, tz_name, None, reply)
        if len(rest) == 3 and rest[0] == "events" and rest[2] == "instances" and method == "GET":
            found = self.find(box, rest[1])
            if found is None or found[1] is not None:
                return odata_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return self._view(request, box, tz_name, found[0], reply)
        if len(rest) == 2 and rest[0] == "events":
            return self._item(request, method, box, rest[1], body, tz_name, reply)
        return odata_error(400, "BadRequest", "Resource not found for the segment.")

    def _create(self, box: str, body: dict[str, Any], tz_name: str | None, reply: Any) -> Response:
        st = self.state
        txn = body.get("transactionId")
        if txn and (box, txn) in st.transactions:
            # A client retry with the same transactionId: the first event, not a second one.
            existing = st.events[box].get(st.transactions[(box, txn)])
            if existing is not None:
                return reply(self.render(existing, tz_name), 201)
        ev = self.create(box, body)
        if txn:
            st.transactions[(box, txn)] = ev["id"]
        self.notify(box, ev, "invitation", ev["attendees"])
        if st.fail_after_commit > 0:
            st.fail_after_commit -= 1  # the event exists, but the answer is lost
            return odata_error(503, "serviceNotAvailable", "Service unavailable")
        return reply(self.render(ev, tz_name), 201)

    def _item(self, request: Request, method: str, box: str, event_id: str, body: dict[str, Any],
              tz_name: str | None, reply: Any) -> Response:
        found = self.find(box, event_id)
        if found is None:
            return odata_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        ev, occ = found
        if method == "GET":
            return reply(self.render(ev, tz_name, occ=occ))
        if occ is not None:
            return odata_error(400, "ErrorInvalidRequest", "Editing single occurrences is not supported here.")
        match = request.headers.get("if-match")
        if match and match != "*" and match not in (ev["@odata.etag"], ev["changeKey"]):
            return odata_error(412, "ErrorIrresolvableConflict", "The send or update operation could not be performed "
                               "because the change key passed in the request does not match the current change key "
                               "for the item.")
        if method == "DELETE":
            del self.state.events[box][event_id]
            self.notify(box, ev, "cancellation", ev.get("attendees") or [])
            return Response(status_code=204)
        merged = dict(ev)
        for k, v in body.items():
            if k in ("id", "changeKey", "@odata.etag", "createdDateTime", "organizer", "iCalUId", "type"):
                continue
            merged[k] = v
        if "attendees" in body:
            merged["attendees"] = [{"type": a.get("type") or "required",
                                    "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                                    "emailAddress": a.get("emailAddress") or {}} for a in body["attendees"] or []]
        if "start" in body:
            merged["originalStartTimeZone"] = merged["start"]["timeZone"]
        if "end" in body:
            merged["originalEndTimeZone"] = merged["end"]["timeZone"]
        merged["type"] = "seriesMaster" if merged.get("recurrence") else "singleInstance"
        self.validate(merged)
        if merged.get("isOnlineMeeting") and not ev.get("isOnlineMeeting"):
            merged["onlineMeeting"] = {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/{secrets.token_hex(12)}"}
        self._change(merged)
        self.state.events[box][event_id] = merged
        changed = {k for k in body if k in MEETING_FIELDS and body[k] != ev.get(k)}
        if changed:
            # The organizer's mailbox sends updates when a meeting property changes, and
            # cancellations to attendees who were removed.
            now = {(a.get("emailAddress") or {}).get("address", "").lower() for a in merged["attendees"]}
            self.notify(box, merged, "update", merged["attendees"])
            self.notify(box, merged, "cancellation", [a for a in ev.get("attendees") or []
                                                      if (a.get("emailAddress") or {}).get("address", "").lower()
                                                      not in now])
        return reply(self.render(merged, tz_name))

    def _view(self, request: Request, box: str, tz_name: str | None, master: dict[str, Any] | None, reply: Any
              ) -> Response:
        q = request.query_params
        if not q.get("startDateTime") or not q.get("endDateTime"):
            return odata_error(400, "ErrorInvalidParameter", "This request requires a time window specified by the "
                               "query string parameters StartDateTime and EndDateTime.")
        try:
            # The offsets in the query are honoured; no offset means UTC (Prefer does not apply here).
            lo = datetime.fromisoformat(q["startDateTime"].replace("Z", "+00:00"))
            hi = datetime.fromisoformat(q["endDateTime"].replace("Z", "+00:00"))
        except ValueError:
            return odata_error(400, "ErrorInvalidParameter", "The value of StartDateTime or EndDateTime is invalid.")
        lo = lo if lo.tzinfo else lo.replace(tzinfo=UTC)
        hi = hi if hi.tzinfo else hi.replace(tzinfo=UTC)
        items: list[tuple[datetime, dict[str, Any]]] = []
        for ev in [master] if master is not None else list(self.state.events[box].values()):
            if ev.get("recurrence"):
                for occ in self.occurrences(ev, lo, hi):
                    items.append((occ[0], self.render(ev, tz_name, occ=occ)))
            elif master is None:
                for occ in self.occurrences(ev, lo, hi):
                    items.append((occ[0], self.render(ev, tz_name)))
        items.sort(key=lambda p: p[0])
        top = int(q.get("$top", "10"))
        skip = int(q.get("$skip", "0"))
        page = [i for _, i in items[skip: skip + top]]
        out: dict[str, Any] = {"@odata.context": "sandbox", "value": page}
        if skip + top < len(items):
            params = {k: v for k, v in q.items() if k != "$skip"}
            params["$skip"] = str(skip + top)
            out["@odata.nextLink"] = f"{str(request.url).split('?', 1)[0]}?{urlencode(params)}"
        return reply(out)

    def _schedule(self, box: str, body: dict[str, Any], tz_name: str | None) -> dict[str, Any]:
        schedules = body.get("schedules") or []
        if not schedules or len(schedules) > 20:
            raise BadRequest("ErrorInvalidParameter", "The number of schedules must be between 1 and 20.")
        try:
            s_tz = self._zone(body["startTime"]["timeZone"], "startTime")
            e_tz = self._zone(body["endTime"]["timeZone"], "endTime")
            lo = parse_local(body["startTime"]["dateTime"]).replace(tzinfo=s_tz)
            hi = parse_local(body["endTime"]["dateTime"]).replace(tzinfo=e_tz)
        except (KeyError, ValueError):
            raise BadRequest("ErrorInvalidParameter", "startTime and endTime are required.") from None
        if hi <= lo or hi - lo >= timedelta(days=62):
            raise BadRequest("ErrorInvalidParameter", "The time range must be positive and less than 62 days.")
        interval = int(body.get("availabilityViewInterval") or 30)
        if not 5 <= interval <= 1440:
            raise BadRequest("ErrorInvalidParameter", "availabilityViewInterval must be between 5 and 1440.")
        target = resolve_zone(tz_name) or ZoneInfo("UTC")
        label = tz_name if resolve_zone(tz_name) else "UTC"
        out = []
        for sid in schedules:
            mb = self.state.mailboxes.get(str(sid).lower())
            if mb is None:
                out.append({"scheduleId": sid, "availabilityView": "", "error": {
                    "message": "The user or resource could not be found.",
                    "responseCode": "ErrorMailRecipientNotFound"}})
                continue
            items = []
            for ev in self.state.events[str(sid).lower()].values():
                status = ev.get("showAs") or "busy"
                if ev.get("isCancelled") or status == "free":
                    continue
                for s, e in self.occurrences(ev, lo, hi):
                    items.append((s, e, status, ev))
            items.sort(key=lambda x: x[0])
            view = ""
            t = lo
            while t < hi:
                nxt = t + timedelta(minutes=interval)
                digits = [AV_DIGIT.get(st, "2") for s, e, st, _ in items if s < nxt and e > t]
                view += max(digits, key=lambda d: AV_RANK[d]) if digits else "0"
                t = nxt
            entry: dict[str, Any] = {
                "scheduleId": sid, "availabilityView": view,
                "scheduleItems": [{"isPrivate": False, "status": st, "subject": ev.get("subject"),
                                   "location": (ev.get("location") or {}).get("displayName"),
                                   "start": {"dateTime": graph_dt(s.astimezone(target)), "timeZone": label},
                                   "end": {"dateTime": graph_dt(e.astimezone(target)), "timeZone": label}}
                                  for s, e, st, ev in items]}
            wh = mb.get("working_hours")
            if wh:
                entry["workingHours"] = wh
            out.append(entry)
        return {"value": out}

    # ---- controls -----------------------------------------------------------------------------------
    def control_router(self) -> APIRouter:
        r = APIRouter()
        st = self.state

        @r.post("/mailboxes")
        async def add_mailbox(cfg: MailboxConfig) -> dict[str, Any]:
            data = cfg.model_dump()
            if data["working_hours"] is None:
                data["working_hours"] = {"daysOfWeek": list(GRAPH_DAYS[:5]), "startTime": "08:00:00.0000000",
                                         "endTime": "17:00:00.0000000",
                                         "timeZone": {"name": tz_win.get(cfg.time_zone, cfg.time_zone)}}
            st.mailboxes[cfg.email.lower()] = data
            return {"ok": True}

        @r.post("/mailboxes/{email}/events")
        async def seed(email: str, body: dict[str, Any]) -> Response:
            box = email.lower()
            if box not in st.mailboxes:
                return JSONResponse({"error": "unknown mailbox"}, status_code=404)
            try:
                ev = self.create(box, body)
            except BadRequest as exc:
                return exc.response
            return JSONResponse(self.render(ev, None), status_code=201)

        @r.get("/mailboxes/{email}/events")
        async def dump(email: str) -> list[dict[str, Any]]:
            return [self.render(ev, None) for ev in st.events[email.lower()].values()]

        @r.put("/limits")
        async def limits(cfg: LimitsConfig) -> dict[str, Any]:
            st.budget, st.period, st.concurrency = cfg.budget, cfg.period, cfg.concurrency
            st.retry_after, st.hold_ms = cfg.retry_after, cfg.hold_ms
            st.windows.clear()
            st.max_inflight.clear()
            return {"ok": True}

        @r.post("/fail_after_commit")
        async def fail(body: dict[str, int]) -> dict[str, Any]:
            st.fail_after_commit = int(body.get("count", 1))
            return {"ok": True}

        @r.post("/tokens/expire")
        async def expire(body: dict[str, str]) -> dict[str, Any]:
            tok = st.tokens.get(body.get("access_token", ""))
            if tok:
                tok.expires_at = 0
            return {"ok": tok is not None}

        @r.get("/notifications")
        async def notifications(event_id: str | None = None) -> list[dict[str, Any]]:
            return [n for n in st.notifications if event_id is None or n["event_id"] == event_id]

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            return {"throttled": st.throttled, "max_inflight": dict(st.max_inflight)}

        return r


class EntraFake:
    """Routes under /entra: /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/oauth2/v2.0/{authorize,token}."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.state = EntraFakeState()

    def graph(self) -> GraphFake:
        fake = self.sandbox.providers.get("graph")
        if not isinstance(fake, GraphFake):  # pragma: no cover - registered together in sandbox/app.py
            raise RuntimeError("the Graph fake is not registered")
        return fake

    @staticmethod
    def error(status: int, error: str, aadsts: int, message: str, headers: dict[str, str] | None = None
              ) -> JSONResponse:
        """reference-error-codes.md body: error, error_description (AADSTS…, Trace/Correlation ID, Timestamp),
        error_codes, timestamp, trace_id, correlation_id, error_uri."""
        ts = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        return JSONResponse({
            "error": error,
            "error_description": f"AADSTS{aadsts}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\n"
                                 f"Timestamp: {ts}",
            "error_codes": [aadsts], "timestamp": ts, "trace_id": trace, "correlation_id": corr,
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}"}, status_code=status, headers=headers)

    def _tenant_known(self, tenant: str) -> bool:
        return tenant in ("common", "organizations") or tenant in self.state.tenants

    def _id_token(self, user: str, client_id: str, tenant: str) -> str:
        def part(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        now = int(time.time())
        claims = {"aud": client_id, "iss": f"https://login.microsoftonline.com/{tenant}/v2.0", "iat": now,
                  "nbf": now, "exp": now + 3600, "sub": hashlib.sha256(user.encode()).hexdigest()[:43],
                  "oid": str(uuid.uuid5(uuid.NAMESPACE_DNS, user)), "tid": tenant, "preferred_username": user,
                  "name": user.split("@")[0], "ver": "2.0"}
        return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sig': secrets.token_hex(8)})}"

    def _issue(self, user: str | None, app: dict[str, Any], tenant: str, scopes: set[str], expires_in: int = 3599,
               *, refresh: bool = True) -> dict[str, Any]:
        token = "eyJ0eXAi.sandbox." + secrets.token_urlsafe(32)
        self.graph().state.tokens[token] = GraphToken(
            user.lower() if user else None, app["client_id"], tenant, scopes,
            set(app["roles"]) if user is None else set(), time.time() + expires_in)
        out: dict[str, Any] = {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                               "access_token": token}
        if user is not None:
            out["scope"] = " ".join(sorted(scopes | {"openid", "profile", "offline_access"}))
            out["id_token"] = self._id_token(user, app["client_id"], tenant)
            out["client_info"] = base64.urlsafe_b64encode(json.dumps(
                {"uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, user)), "utid": tenant}).encode()).decode().rstrip("=")
        if refresh and user is not None:
            rt = "0.ARsandbox." + secrets.token_urlsafe(40)
            self.state.refresh[rt] = {"user": user.lower(), "client_id": app["client_id"], "tenant": tenant,
                                      "scopes": scopes, "used": False, "revoked": None}
            out["refresh_token"] = rt
        return out

    def router(self) -> APIRouter:
        r = APIRouter()
        st = self.state

        @r.get("/{tenant}/v2.0/.well-known/openid-configuration")
        async def discovery(tenant: str) -> Response:
            if not self._tenant_known(tenant):
                return self.error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            base = f"{st.public_host}/{tenant}"
            return JSONResponse({"token_endpoint": f"{base}/oauth2/v2.0/token",
                                 "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                 "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                                 "jwks_uri": f"{base}/discovery/v2.0/keys",
                                 "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                                 "scopes_supported": ["openid", "profile", "email", "offline_access"],
                                 "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                                           "client_secret_basic"]})

        @r.get("/{tenant}/oauth2/v2.0/authorize")
        async def authorize(tenant: str, request: Request) -> Response:
            q = dict(request.query_params)
            app = st.apps.get(q.get("client_id", ""))
            if app is None:
                return self.error(400, "unauthorized_client", 700016, "Application was not found in the directory.")
            if q.get("redirect_uri") not in app["redirect_uris"]:
                return self.error(400, "invalid_request", 50011, "The redirect URI specified in the request does not "
                                  "match the redirect URIs configured for the application.")
            if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
                return self.error(400, "invalid_request", 9002325, "Proof Key for Code Exchange is required.")
            user = (q.get("login_hint") or st.default_user or "").lower()
            code = "0.AXsandbox-code." + secrets.token_urlsafe(24)
            st.codes[code] = {"client_id": app["client_id"], "redirect_uri": q["redirect_uri"], "user": user,
                              "scopes": {s for s in (q.get("scope") or "").split()
                                         if s not in ("openid", "profile", "offline_access")},
                              "challenge": q["code_challenge"], "tenant": tenant, "expires": time.time() + 600}
            query = urlencode({"code": code, "state": q.get("state", ""), "session_state": str(uuid.uuid4())})
            return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

        @r.post("/{tenant}/oauth2/v2.0/token")
        async def token(tenant: str, request: Request) -> Response:
            form = dict((await request.form()).items())
            st.token_requests.append({"grant_type": form.get("grant_type"), "at": time.time(),
                                      "refresh_token_fp": hashlib.sha256(str(form.get("refresh_token", "")).encode())
                                      .hexdigest()[:12] if form.get("refresh_token") else None})
            if st.faults:
                fault = st.faults.pop(0)
                headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") else None
                return self.error(int(fault.get("status", 503)), "temporarily_unavailable", 50196,
                                  "The server is temporarily unavailable.", headers=headers)
            if not self._tenant_known(tenant):
                return self.error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            app = st.apps.get(str(form.get("client_id", "")))
            if app is None:
                return self.error(400, "unauthorized_client", 700016, "Application was not found in the directory.")
            if app["client_secret"] != form.get("client_secret"):
                return self.error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            grant = form.get("grant_type")
            scopes = {s for s in str(form.get("scope", "")).split() if s not in ("openid", "profile", "offline_access")}
            if grant == "client_credentials":
                if scopes != {"https://graph.microsoft.com/.default"}:
                    return self.error(400, "invalid_scope", 1002012, "The provided value for scope is not valid. "
                                      "Client credential flows must have a scope value with /.default suffixed.")
                return JSONResponse(self._issue(None, app, app["tenant"], scopes, refresh=False))
            if grant == "refresh_token":
                rec = st.refresh.get(str(form.get("refresh_token", "")))
                if rec is None or rec["client_id"] != app["client_id"]:
                    return self.error(400, "invalid_grant", 9002313,
                                      "Invalid request. Request is malformed or invalid.")
                if rec["revoked"]:
                    code = int(rec["revoked"])
                    error = "interaction_required" if code in (50076, 50079) else "invalid_grant"
                    return self.error(400, error, code, {
                        70008: "The provided authorization code or refresh token has expired due to inactivity.",
                        700082: "The refresh token has expired due to inactivity. The token was issued on "
                                "2024-01-01 and was inactive for 90.00:00:00.",
                        50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                        65001: "The user or administrator has not consented to use the application.",
                    }.get(code, "The user must sign in again."))
                if rec["used"] and app["strict_rotation"]:
                    return self.error(400, "invalid_grant", 70008, "The provided authorization code or refresh "
                                      "token has expired due to inactivity.")
                rec["used"] = True
                return JSONResponse(self._issue(rec["user"], app, rec["tenant"], scopes or rec["scopes"]))
            if grant == "authorization_code":
                rec = st.codes.pop(str(form.get("code", "")), None)
                if rec is None or rec["expires"] < time.time() or rec["client_id"] != app["client_id"]:
                    return self.error(400, "invalid_grant", 70000, "The provided value for the 'code' parameter is "
                                      "not valid.")
                if rec["redirect_uri"] != form.get("redirect_uri"):
                    return self.error(400, "invalid_grant", 50148, "The redirect_uri does not match.")
                verifier = str(form.get("code_verifier", ""))
                expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if expected != rec["challenge"]:
                    return self.error(400, "invalid_grant", 501481, "The Code_Verifier does not match the "
                                      "code_challenge supplied in the authorization request.")
                if rec["user"] not in self.graph().state.mailboxes:
                    return self.error(400, "invalid_grant", 50034, "The user account does not exist in the directory.")
                return JSONResponse(self._issue(rec["user"], app, rec["tenant"], scopes or rec["scopes"]))
            return self.error(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type "
                              f"'{grant}'.")

        return r

    def control_router(self) -> APIRouter:
        r = APIRouter()
        st = self.state

        @r.post("/apps")
        async def add_app(cfg: AppConfig) -> dict[str, Any]:
            st.apps[cfg.client_id] = cfg.model_dump()
            st.tenants.add(cfg.tenant)
            return {"ok": True}

        @r.put("/public_host")
        async def public_host(body: dict[str, str]) -> dict[str, Any]:
            st.public_host = body["host"].rstrip("/")
            return {"ok": True}

        @r.post("/default_user")
        async def default_user(body: dict[str, str]) -> dict[str, Any]:
            st.default_user = body["user"].lower()
            return {"ok": True}

        @r.post("/tokens")
        async def issue(req: IssueRequest) -> dict[str, Any]:
            app = st.apps[req.client_id]
            return self._issue(req.user, app, req.tenant, set(req.scopes), req.expires_in)

        @r.post("/refresh_tokens/revoke")
        async def revoke(body: dict[str, Any]) -> dict[str, Any]:
            rec = st.refresh.get(str(body.get("refresh_token", "")))
            if rec:
                rec["revoked"] = int(body.get("aadsts", 50173))
            return {"ok": rec is not None}

        @r.post("/faults")
        async def faults(body: dict[str, Any]) -> dict[str, Any]:
            st.faults.extend([{"status": body.get("status", 503), "retry_after": body.get("retry_after")}]
                             * int(body.get("count", 1)))
            return {"ok": True}

        @r.get("/stats")
        async def stats() -> dict[str, Any]:
            return {"token_requests": [{k: v for k, v in t.items() if k != "at"} for t in st.token_requests]}

        return r
