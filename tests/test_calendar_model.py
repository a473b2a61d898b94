"""Pure units: time zones (DST gap/fold, Windows⇄IANA), recurrence (canonical RRULE, Graph pattern/range),
CalendarAction resolution, provider translations both ways, free-slot arithmetic, notification rules and the
error classifiers (Google §1.3 rows, Graph codes, Entra AADSTS)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from google.auth import exceptions as gexc

from activities.calendar import availability as av
from activities.calendar import recurrence as rec
from activities.calendar.model import (
    Attendee,
    BusyInterval,
    CalendarEvent,
    EventPatch,
    EventSpec,
    EventTime,
    ParticipantAvailability,
    Reminder,
    Reminders,
    WorkingHours,
)
from activities.calendar.resolve import apply_patch, resolve_event
from activities.calendar.tz import (
    from_windows,
    is_second_occurrence,
    localize,
    parse_date,
    parse_datetime,
    to_windows,
    zone,
)
from activities.google_calendar import errors as gerr
from activities.google_calendar import notify as google_notify
from activities.google_calendar.auth import TokenEndpointUnavailable, _refresh_failure
from activities.google_calendar.translate import event_id_for, from_google, to_google
from activities.outlook import errors as merr
from activities.outlook import notify as graph_notify
from activities.outlook.auth import token_error
from activities.outlook.translate import from_graph, parse_graph_datetime, parse_instant, to_graph
from core.errors import ErrorClass, PermanentError
from sandbox.graph import GraphFake
from sandbox.state import SandboxState

NY = ZoneInfo("America/New_York")


def perm(fn, *args, **kw) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        fn(*args, **kw)
    return info.value


# ---- time zones ------------------------------------------------------------------------------------
def test_spring_forward_gap_is_rejected_or_shifted() -> None:
    err = perm(localize, datetime(2024, 3, 10, 2, 30), NY, "reject", "startTime")
    assert err.code == "dst_gap" and err.details["field"] == "startTime"
    shifted = localize(datetime(2024, 3, 10, 2, 30), NY, "shift")
    assert shifted.isoformat() == "2024-03-10T03:30:00-04:00"
    ev = resolve_event(EventSpec(title="t", startTime="2024-03-10T02:30:00", endTime="2024-03-10T03:00:00",
                                 timezone="America/New_York"), "shift")
    # The 30 minutes asked for survive the shift.
    assert (ev.start.date_time.isoformat(), ev.end.date_time.isoformat()) == (
        "2024-03-10T03:30:00-04:00", "2024-03-10T04:00:00-04:00")


def test_ambiguous_time_is_its_first_occurrence_unless_an_offset_says_otherwise() -> None:
    first = parse_datetime("2024-11-03T01:30:00", NY)
    assert first.utcoffset() == timedelta(hours=-4) and first.astimezone(UTC).hour == 5
    assert not is_second_occurrence(first)
    second = parse_datetime("2024-11-03T01:30:00-05:00", NY)
    assert second.astimezone(UTC).hour == 6 and is_second_occurrence(second)


def test_zone_names() -> None:
    assert zone("Pacific Standard Time").key == "America/Los_Angeles"  # Windows names are accepted on input
    assert perm(zone, "Mars/Olympus").code == "unknown_time_zone"
    assert perm(zone, "localtime").code == "unknown_time_zone"
    assert to_windows("America/Los_Angeles") == "Pacific Standard Time"
    assert to_windows("Asia/Kolkata") == "India Standard Time" and to_windows("GMT") == "UTC"
    assert perm(to_windows, "EST5EDT").code == "unsupported_time_zone"
    assert from_windows("India Standard Time") == "Asia/Calcutta"  # CLDR's own spelling
    assert from_windows("India Standard Time", hint="Asia/Kolkata") == "Asia/Kolkata"
    assert from_windows("W. Europe Standard Time", hint="Asia/Kolkata") == "Europe/Berlin"
    assert from_windows("Europe/Berlin") == "Europe/Berlin"  # Graph may echo IANA names
    assert perm(from_windows, "tzone://Microsoft/Custom").code == "unknown_time_zone"


def test_all_day_dates_are_taken_as_written() -> None:
    assert parse_date("2024-06-01") == date(2024, 6, 1)
    assert parse_date("2024-06-01T00:00:00.000Z") == date(2024, 6, 1)  # never shifted through a zone
    assert perm(parse_date, "2024-06-01T10:00:00").code == "invalid_date"
    assert perm(parse_datetime, "2024-06-01", NY).code == "invalid_time"


# ---- recurrence --------------------------------------------------------------------------------------
def test_until_becomes_utc_end_of_the_last_day_for_zoned_starts() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)
    forms = ["RRULE:FREQ=DAILY;UNTIL=20240318", "RRULE:FREQ=DAILY;UNTIL=20240318T090000",
             "RRULE:FREQ=DAILY;UNTIL=20240318T130000Z", "RRULE:FREQ=DAILY;UNTIL=20240318T235959"]
    assert {rec.normalize([f], start, NY)[0] for f in forms} == {"RRULE:FREQ=DAILY;UNTIL=20240319T035959Z"}
    # An UNTIL before the day's occurrence excludes that day.
    assert rec.normalize(["RRULE:FREQ=DAILY;UNTIL=20240318T120000Z"], start, NY) == [
        "RRULE:FREQ=DAILY;UNTIL=20240318T035959Z"]
    # Sub-daily rules keep their exact UTC UNTIL.
    assert rec.normalize(["RRULE:FREQ=HOURLY;UNTIL=20240304T113000"], start, NY) == [
        "RRULE:FREQ=HOURLY;UNTIL=20240304T163000Z"]
    assert rec.normalize(["RRULE:FREQ=DAILY;UNTIL=20240310"], date(2024, 3, 4), NY) == [
        "RRULE:FREQ=DAILY;UNTIL=20240310"]


def test_weekly_series_keeps_its_wall_time_across_dst() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)
    lines = rec.normalize(["RRULE:FREQ=WEEKLY;COUNT=3"], start, NY)
    occ = rec.expand(lines, start, NY, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    assert [o.strftime("%H:%M") for o in occ] == ["09:00"] * 3
    assert [o.astimezone(UTC).hour for o in occ] == [14, 13, 13]


def test_recurrence_validation() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)
    for lines, text in [
        (["DTSTART:20240304T090000", "RRULE:FREQ=DAILY"], "DTSTART and DTEND"),
        (["RRULE:FREQ=DAILY;COUNT=2;UNTIL=20240310"], "COUNT and UNTIL"),
        (["RRULE:FREQ=DAILY;FOO=1"], "unknown RRULE part FOO"),
        (["RRULE:FREQ=WEEKLY;BYDAY=TU"], "not an occurrence"),
        (["RRULE:FREQ=DAILY;UNTIL=20240301"], "no occurrences"),
        (["RRULE:INTERVAL=2"], "needs FREQ"),
        (["EXRULE:FREQ=DAILY"], "deprecated"),
        (["RRULE:FREQ=DAILY", "RRULE:FREQ=WEEKLY"], "one RRULE"),
    ]:
        err = perm(rec.normalize, lines, start, NY)
        assert err.code == "invalid_recurrence" and text in err.message, lines


GRAPH_TABLE = [
    ("RRULE:FREQ=DAILY;COUNT=5;INTERVAL=2", {"type": "daily", "interval": 2},
     {"type": "numbered", "numberOfOccurrences": 5}),
    ("RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR", {"type": "weekly", "interval": 1,
                                           "daysOfWeek": ["monday", "wednesday", "friday"],
                                           "firstDayOfWeek": "monday"}, {"type": "noEnd"}),
    ("RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;WKST=SU", {"type": "weekly", "interval": 2, "daysOfWeek": ["monday"],
                                                       "firstDayOfWeek": "sunday"}, {"type": "noEnd"}),
    ("RRULE:FREQ=MONTHLY;UNTIL=20241231T045959Z;BYMONTHDAY=4",
     {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 4}, {"type": "endDate", "endDate": "2024-12-30"}),
    ("RRULE:FREQ=MONTHLY;BYDAY=1MO", {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"],
                                      "index": "first"}, {"type": "noEnd"}),
    ("RRULE:FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1", {"type": "relativeMonthly", "interval": 1,
                                                   "daysOfWeek": ["monday", "tuesday"], "index": "first"},
     {"type": "noEnd"}),
    ("RRULE:FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=4", {"type": "absoluteYearly", "interval": 1, "month": 3,
                                                  "dayOfMonth": 4}, {"type": "noEnd"}),
    ("RRULE:FREQ=YEARLY;COUNT=4;BYMONTH=3;BYDAY=1MO", {"type": "relativeYearly", "interval": 1, "month": 3,
                                                       "daysOfWeek": ["monday"], "index": "first"},
     {"type": "numbered", "numberOfOccurrences": 4}),
]


@pytest.mark.parametrize(("rrule", "pattern", "rng"), GRAPH_TABLE)
def test_graph_pattern_and_rrule_translate_both_ways(rrule: str, pattern: dict, rng: dict) -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)  # a Monday, the first Monday of March
    canonical = rec.normalize([rrule], start, NY)
    assert canonical == [rrule]
    graph = rec.to_graph(canonical, start, NY)
    assert graph["pattern"] == pattern
    assert graph["range"] == {**rng, "startDate": "2024-03-04", "recurrenceTimeZone": "Eastern Standard Time"}
    assert rec.from_graph(graph, start, NY) == canonical
    # Both describe the same occurrences.
    lo, hi = datetime(2024, 3, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    assert rec.expand(canonical, start, NY, lo, hi)[:10] == rec.expand(rec.from_graph(graph, start, NY), start, NY,
                                                                       lo, hi)[:10]


def test_graph_relative_last_and_every_weekday() -> None:
    start = datetime(2024, 3, 29, 9, tzinfo=NY)  # the last Friday of March
    graph = {"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
             "range": {"type": "noEnd", "startDate": "2024-03-29"}}
    assert rec.from_graph(graph, start, NY) == ["RRULE:FREQ=MONTHLY;BYDAY=-1FR"]
    weekdays = rec.normalize(["RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR"], datetime(2024, 3, 4, 9, tzinfo=NY), NY)
    assert weekdays == ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"]


@pytest.mark.parametrize(("rrule", "start"), [
    ("RRULE:FREQ=DAILY;BYHOUR=9,15", datetime(2024, 3, 4, 9, tzinfo=NY)),
    ("RRULE:FREQ=MONTHLY;BYDAY=5MO", datetime(2024, 4, 29, 9, tzinfo=NY)),  # April 2024 has five Mondays
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=-1", datetime(2024, 3, 31, 9, tzinfo=NY)),
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=4,18", datetime(2024, 3, 4, 9, tzinfo=NY)),
    ("RRULE:FREQ=HOURLY", datetime(2024, 3, 4, 9, tzinfo=NY)),
    ("RRULE:FREQ=YEARLY;BYMONTH=3,9;BYMONTHDAY=4", datetime(2024, 3, 4, 9, tzinfo=NY)),
    ("RRULE:FREQ=DAILY;INTERVAL=2;BYDAY=MO", datetime(2024, 3, 4, 9, tzinfo=NY)),
])
def test_what_graph_cannot_express_is_an_error(rrule: str, start: datetime) -> None:
    lines = rec.normalize([rrule], start, NY)  # a valid series for Google
    err = perm(rec.to_graph, lines, start, NY)
    assert err.code == "unsupported_by_provider" and err.message.startswith("recurrence: Microsoft Graph cannot")


def test_exdate_is_normalised_to_the_event_zone_and_refused_by_graph() -> None:
    start = datetime(2024, 3, 4, 9, tzinfo=NY)
    lines = rec.normalize(["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE:20240311T130000Z"], start, NY)
    assert lines == ["RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO", "EXDATE;TZID=America/New_York:20240311T090000"]
    assert len(rec.expand(lines, start, NY, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))) == 2
    assert "EXDATE" in perm(rec.to_graph, lines, start, NY).message


# ---- CalendarAction resolution -----------------------------------------------------------------------
def test_all_day_multi_day_calendar_action() -> None:
    ev = resolve_event(EventSpec(title="Offsite", startTime="2024-06-01", endTime="2024-06-03", isAllDay=True,
                                 timezone="Europe/Berlin"))
    assert ev.all_day and ev.start.date == date(2024, 6, 1) and ev.end.date == date(2024, 6, 4)  # exclusive
    one = resolve_event(EventSpec(title="Day", startTime="2024-06-01", endTime="2024-06-01", isAllDay=True))
    assert one.end.date == date(2024, 6, 2)
    err = perm(resolve_event, EventSpec(title="x", startTime="2024-06-03", endTime="2024-06-01", isAllDay=True))
    assert err.code == "invalid_time_range" and err.details["field"] == "endTime"


def test_variables_both_syntaxes() -> None:
    ev = resolve_event(EventSpec(
        title="Kickoff with {CUSTOMER_NAME}", description="Deal {{ deal.value }} for {{customer.name}}",
        startTime="{{start}}", endTime="{{ end }}", timezone="{TZ}", attendees=["{{customer.email}}"],
        variables={"CUSTOMER_NAME": "Acme", "deal": {"value": 1200}, "customer": {"name": "Ann",
                                                                                   "email": "ann@acme.test"},
                   "start": "2024-05-06T10:00:00", "end": "2024-05-06T11:00:00", "TZ": "Europe/Paris"}))
    assert ev.title == "Kickoff with Acme" and ev.description == "Deal 1200 for Ann"
    assert ev.attendees[0].email == "ann@acme.test" and ev.time_zone == "Europe/Paris"
    assert ev.start.date_time.isoformat() == "2024-05-06T10:00:00+02:00"
    err = perm(resolve_event, EventSpec(title="Hi {who}", startTime="2024-05-06T10:00:00",
                                        endTime="2024-05-06T11:00:00", variables={"x": 1}))
    assert err.code == "missing_variable" and err.details == {"field": "title", "variable": "who"}
    plain = resolve_event(EventSpec(title="Literal {braces}", startTime="2024-05-06T10:00:00",
                                    endTime="2024-05-06T11:00:00"))
    assert plain.title == "Literal {braces}"


def test_opensyte_json_shapes() -> None:
    ev = resolve_event(EventSpec.model_validate({
        "title": "x", "startTime": "2024-05-06T10:00:00Z", "endTime": "2024-05-06T11:00:00Z",
        "timezone": "Asia/Tokyo", "attendees": ["a@x.test", {"email": "b@x.test", "optional": True}],
        "reminders": [10, {"method": "email", "minutes": 60}],
        "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                       "range": {"type": "numbered", "numberOfOccurrences": 2, "startDate": "2024-05-06"}}}))
    assert ev.start.date_time.isoformat() == "2024-05-06T19:00:00+09:00"  # the instant, shown in Tokyo
    assert [a.optional for a in ev.attendees] == [False, True]
    assert ev.reminders.overrides == [Reminder(minutes=10), Reminder(method="email", minutes=60)]
    assert ev.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=2;BYDAY=MO;WKST=SU"]
    assert Reminders.model_validate({"useDefault": True}).use_default


def test_patch_semantics() -> None:
    ev = resolve_event(EventSpec(title="x", startTime="2024-03-04T09:00:00", endTime="2024-03-04T10:00:00",
                                 timezone="America/New_York", recurrence=["RRULE:FREQ=WEEKLY;UNTIL=20240325"]))
    moved, changed = apply_patch(ev, EventPatch(startTime="2024-03-11T10:00:00", endTime="2024-03-11T11:00:00"))
    assert changed == {"times"} and moved.recurrence == ["RRULE:FREQ=WEEKLY;UNTIL=20240326T035959Z;BYDAY=MO"]
    err = perm(apply_patch, ev, EventPatch(startTime="2024-03-12T10:00:00", endTime="2024-03-12T11:00:00"))
    assert "pass recurrence too" in err.message
    same, changed = apply_patch(ev, EventPatch(timezone="Europe/London"))
    assert same.start.date_time == ev.start.date_time and same.time_zone == "Europe/London"
    # The series now expands in London: its UNTIL (end of the last day, in UTC) moves with the zone.
    assert changed == {"times", "recurrence"}
    assert same.recurrence == ["RRULE:FREQ=WEEKLY;UNTIL=20240325T235959Z;BYDAY=MO"]
    _, changed = apply_patch(ev, EventPatch(title="x"))
    assert changed == set()
    with pytest.raises(ValueError, match="together"):
        EventPatch(startTime="2024-03-11T10:00:00")


# ---- provider translations ------------------------------------------------------------------------------
def _events() -> list[CalendarEvent]:
    timed = resolve_event(EventSpec(
        title="Weekly", description="text body", location="Room 1", startTime="2024-03-04T09:00:00",
        endTime="2024-03-04T09:30:00", timezone="America/New_York", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
        attendees=["a@x.test", {"email": "b@x.test", "optional": True}], reminders=[{"minutes": 15}]))
    all_day = resolve_event(EventSpec(title="Trip", startTime="2024-06-01", endTime="2024-06-03", isAllDay=True,
                                      timezone="Asia/Kolkata", reminders=[]))
    gap = resolve_event(EventSpec(title="Early", startTime="2024-03-10T02:30:00", endTime="2024-03-10T03:30:00",
                                  timezone="America/New_York", online_meeting=True, show_as="free",
                                  reminders=[{"minutes": 5}]), "shift")
    return [timed, all_day, gap]


@pytest.mark.parametrize("idx", [0, 1, 2])
def test_google_round_trip_is_lossless(idx: int) -> None:
    ev = _events()[idx]
    body = to_google(ev, request_id="r1")
    # What Google adds on insert (the sandbox fake stores and returns the same shape).
    answer = {**body, "id": "abc123def", "etag": '"1"', "kind": "calendar#event", "status": "confirmed",
              "organizer": {"email": "me@x.test", "self": True}, "iCalUID": "abc123def@google.com",
              "attendees": [{**a} for a in body["attendees"]]}
    if ev.online_meeting:
        answer["conferenceData"] = {"entryPoints": [{"entryPointType": "video", "uri": "https://meet.google.com/x"}]}
        answer["hangoutLink"] = "https://meet.google.com/x"
    back = from_google(answer, "primary")
    assert back.writable() == ev.writable()
    if ev.all_day:
        assert body["start"]["date"] == "2024-06-01" and body["end"]["date"] == "2024-06-04"  # exclusive end
    if ev.recurrence:
        assert body["start"]["timeZone"] == "America/New_York"  # required for recurring events


@pytest.mark.parametrize("idx", [0, 1, 2])
@pytest.mark.parametrize("prefer", [None, "UTC", "Tokyo Standard Time"])
def test_graph_round_trip_is_lossless_in_any_answer_zone(idx: int, prefer: str | None) -> None:
    ev = _events()[idx]
    body = to_graph(ev, transaction="t1")
    fake = GraphFake(SandboxState())
    fake.state.mailboxes["me@x.test"] = {"email": "me@x.test", "display_name": "Me", "rest_enabled": True}
    stored = fake.create("me@x.test", body)
    answer = fake.render(stored, prefer)  # Graph's wire format: 7 digits, no offset, the Prefer zone
    assert answer["start"]["dateTime"].endswith(".0000000")
    back = from_graph(answer, None, hint_tz=ev.time_zone)
    assert back.writable() == ev.writable()


def test_graph_refuses_the_second_occurrence_of_an_ambiguous_time() -> None:
    ev = resolve_event(EventSpec(title="x", startTime="2024-11-03T01:30:00-05:00", endTime="2024-11-03T02:30:00-05:00",
                                 timezone="America/New_York"))
    err = perm(to_graph, ev)
    assert err.code == "unsupported_by_provider" and "second 01:30" in err.message
    assert to_google(ev)["start"]["dateTime"] == "2024-11-03T01:30:00-05:00"  # Google takes the offset
    err = perm(to_graph, ev.model_copy(update={"reminders": Reminders(use_default=False, overrides=[
        Reminder(minutes=5), Reminder(minutes=10)])}))
    assert err.details["field"] in ("startTime", "reminders")


def test_graph_wire_formats() -> None:
    assert parse_graph_datetime("2017-04-15T11:00:00.0000000") == datetime(2017, 4, 15, 11)
    assert parse_instant("2017-04-15T03:00:50.7579581Z") == datetime(2017, 4, 15, 3, 0, 50, 757958, tzinfo=UTC)
    assert len(event_id_for("key")) == 52 and set(event_id_for("key")) <= set("0123456789abcdefghijklmnopqrstuv")


# ---- availability -------------------------------------------------------------------------------------
def _p(email: str, tz: str, busy: list[tuple[str, str]] = (), required: bool = True, **wh) -> ParticipantAvailability:
    return ParticipantAvailability(email=email, required=required, working_hours=WorkingHours(time_zone=tz, **wh),
                                   busy=[BusyInterval(start=datetime.fromisoformat(s), end=datetime.fromisoformat(e))
                                         for s, e in busy])


def test_working_hours_follow_each_zones_dst() -> None:
    wh = WorkingHours(time_zone="America/New_York", days=["sunday"], start="01:00", end="05:00")
    lo, hi = datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC)
    (s, e), = av.working_intervals(wh, lo, hi)
    assert e - s == timedelta(hours=3)  # 01:00-05:00 on the spring-forward day is three real hours
    assert s == datetime(2024, 3, 10, 6, tzinfo=UTC) and s.tzinfo is UTC
    night = WorkingHours(time_zone="UTC", days=["monday"], start="22:00", end="06:00")
    (s, e), = av.working_intervals(night, datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC))
    assert (s.hour, e - s) == (22, timedelta(hours=8))


def test_free_slots_across_three_zones() -> None:
    day = "2024-05-06"
    people = [
        _p("ny@x.test", "America/New_York", [(f"{day}T13:00:00+00:00", f"{day}T14:00:00+00:00")]),
        _p("ber@x.test", "Europe/Berlin"),
        _p("del@x.test", "Asia/Kolkata", start="09:00", end="19:30"),
        _p("tyo@x.test", "Asia/Tokyo", required=False),
        ParticipantAvailability(email="ext@x.test", error="notFound"),
    ]
    slots = av.find_slots(people, datetime.fromisoformat(f"{day}T00:00:00+00:00"),
                          datetime.fromisoformat(f"{day}T23:59:00+00:00"), timedelta(minutes=30),
                          align_tz=ZoneInfo("Asia/Kolkata"), max_slots=3)
    # NY 13:00-21:00 UTC, Berlin 07:00-15:00 UTC, Delhi 03:30-14:00 UTC; NY busy 13:00-14:00 → nothing.
    assert slots == []
    people[2] = _p("del@x.test", "Asia/Kolkata", start="09:00", end="20:30")  # Delhi until 15:00 UTC
    slots = av.find_slots(people, datetime.fromisoformat(f"{day}T00:00:00+00:00"),
                          datetime.fromisoformat(f"{day}T23:59:00+00:00"), timedelta(minutes=30),
                          align_tz=ZoneInfo("Asia/Kolkata"), granularity_minutes=30, max_slots=3)
    assert [s.start.astimezone(UTC).strftime("%H:%M") for s in slots] == ["14:00", "14:30"]
    assert slots[0].start.strftime("%H:%M%z") == "19:30+0530"  # aligned to the Delhi clock
    assert slots[0].optional_free == []


def test_conflicts_use_half_open_intervals() -> None:
    p = _p("a@x.test", "UTC", [("2024-05-06T09:00:00+00:00", "2024-05-06T10:00:00+00:00")])
    ten = datetime(2024, 5, 6, 10, tzinfo=UTC)
    assert av.conflicts([p], ten, ten + timedelta(hours=1)) == []
    assert len(av.conflicts([p], ten - timedelta(minutes=1), ten + timedelta(hours=1))) == 1
    tent = p.model_copy(update={"busy": [p.busy[0].model_copy(update={"status": "tentative"})]})
    assert av.conflicts([tent], ten - timedelta(minutes=30), ten, tentative_is_busy=False) == []


# ---- notification rules ---------------------------------------------------------------------------------
def test_notification_rules() -> None:
    ev = CalendarEvent(title="x", time_zone="UTC", start=EventTime(date=date(2024, 1, 1)),
                       end=EventTime(date=date(2024, 1, 2)),
                       attendees=[Attendee(email="me@corp.test"), Attendee(email="in@corp.test"),
                                  Attendee(email="out@else.test"), Attendee(email="room@corp.test", resource=True)])
    assert google_notify.on_create(ev, "all", "me@corp.test", []) == ["in@corp.test", "out@else.test"]
    assert google_notify.on_create(ev, "externalOnly", "me@corp.test", ["corp.test"]) == ["out@else.test"]
    assert google_notify.on_create(ev, "none", "me@corp.test", []) == []
    assert graph_notify.on_create(ev, "all", "me@corp.test") == ["in@corp.test", "out@else.test"]
    assert perm(graph_notify.on_create, ev, "none", "me@corp.test").code == "unsupported_by_provider"
    after = ev.model_copy(update={"attendees": ev.attendees[:2]})
    assert google_notify.on_update(ev, after, "all", "me@corp.test", []) == [
        "in@corp.test", "out@else.test"]  # the removed guest hears of it too
    assert graph_notify.on_update(ev, after, {"reminders"}, "none", "me@corp.test") == []


# ---- classifiers -----------------------------------------------------------------------------------------
def _g(code: int, reason: str, message: str, domain: str = "global") -> dict:
    return {"error": {"errors": [{"domain": domain, "reason": reason, "message": message}], "code": code,
                      "message": message}}


GOOGLE_ROWS = [
    (400, "timeRangeEmpty", "calendar", ErrorClass.PERMANENT, "timeRangeEmpty", {}),
    (401, "authError", "global", ErrorClass.CONFIGURATION, "authError", {"refresh": True, "reauth": True}),
    (403, "userRateLimitExceeded", "usageLimits", ErrorClass.TEMPORARY, "userRateLimitExceeded", {}),
    (403, "rateLimitExceeded", "usageLimits", ErrorClass.TEMPORARY, "rateLimitExceeded", {}),
    (403, "quotaExceeded", "usageLimits", ErrorClass.PERMANENT, "quotaExceeded", {"usage_limit": True}),
    (403, "forbiddenForNonOrganizer", "calendar", ErrorClass.PERMANENT, "forbiddenForNonOrganizer", {}),
    (403, "insufficientPermissions", "global", ErrorClass.CONFIGURATION, "insufficientPermissions",
     {"reauth": True}),
    (404, "notFound", "global", ErrorClass.TEMPORARY, "notFound", {"not_found": True}),
    (409, "duplicate", "global", ErrorClass.PERMANENT, "duplicate", {}),
    (409, "conflict", "global", ErrorClass.TEMPORARY, "conflict", {}),
    (410, "fullSyncRequired", "calendar", ErrorClass.PERMANENT, "fullSyncRequired", {"full_sync": True}),
    (410, "updatedMinTooLongAgo", "calendar", ErrorClass.PERMANENT, "updatedMinTooLongAgo", {"full_sync": True}),
    (410, "deleted", "global", ErrorClass.PERMANENT, "deleted", {}),
    (412, "conditionNotMet", "global", ErrorClass.PERMANENT, "etag_mismatch", {}),
    (429, "rateLimitExceeded", "usageLimits", ErrorClass.TEMPORARY, "rateLimitExceeded", {}),
    (500, "backendError", "global", ErrorClass.TEMPORARY, "backendError", {}),
]


@pytest.mark.parametrize(("status", "reason", "domain", "cls", "code", "details"), GOOGLE_ROWS)
def test_google_classifier_follows_the_errors_guide(status, reason, domain, cls, code, details) -> None:
    err = gerr.classify(status, {}, _g(status, reason, "msg", domain))
    assert err is not None and err.error_class is cls and err.code == code
    assert details.items() <= err.details.items()
    assert gerr.classify(200, {}, {"kind": "calendar#event"}) is None and gerr.classify(204, {}, None) is None


GRAPH_ROWS = [
    (429, "TooManyRequests", ErrorClass.TEMPORARY), (429, "ApplicationThrottled", ErrorClass.TEMPORARY),
    (401, "InvalidAuthenticationToken", ErrorClass.CONFIGURATION), (403, "ErrorAccessDenied", ErrorClass.CONFIGURATION),
    (404, "ErrorItemNotFound", ErrorClass.PERMANENT), (404, "MailboxNotEnabledForRESTAPI", ErrorClass.CONFIGURATION),
    (400, "MailboxNotEnabledForRESTAPI", ErrorClass.CONFIGURATION), (400, "ErrorInvalidRequest", ErrorClass.PERMANENT),
    (412, "ErrorIrresolvableConflict", ErrorClass.PERMANENT), (409, "ErrorIrresolvableConflict", ErrorClass.PERMANENT),
    (410, "resyncRequired", ErrorClass.PERMANENT), (503, "serviceNotAvailable", ErrorClass.TEMPORARY),
    (404, "ErrorInvalidUser", ErrorClass.CONFIGURATION),
    (504, "gatewayTimeout", ErrorClass.TEMPORARY),
]


@pytest.mark.parametrize(("status", "code", "cls"), GRAPH_ROWS)
def test_graph_classifier_branches_on_code(status: int, code: str, cls: ErrorClass) -> None:
    err = merr.classify(status, {}, {"error": {"code": code, "message": "m", "innerError": {}}})
    assert err is not None and err.error_class is cls
    if code in ("ErrorIrresolvableConflict",):
        assert err.code == "etag_mismatch"
    if code == "ErrorItemNotFound":
        assert err.code == "notFound"  # what a repeated delete treats as success; ErrorInvalidUser is not
    if status == 401:
        assert err.details["refresh"] and err.details["reauth"]
    assert merr.classify(201, {}, {"id": "x"}) is None


@pytest.mark.parametrize(("body", "cls", "reauth"), [
    ({"error": "invalid_grant", "error_codes": [70008]}, ErrorClass.CONFIGURATION, True),
    ({"error": "invalid_grant", "error_codes": [700082]}, ErrorClass.CONFIGURATION, True),
    ({"error": "invalid_grant", "error_codes": [50173]}, ErrorClass.CONFIGURATION, True),
    ({"error": "invalid_grant", "error_codes": [65001]}, ErrorClass.CONFIGURATION, True),
    ({"error": "interaction_required", "error_codes": [50076]}, ErrorClass.CONFIGURATION, True),
    ({"error": "invalid_client", "error_codes": [7000215]}, ErrorClass.CONFIGURATION, False),
    ({"error": "invalid_scope", "error_description": "AADSTS70011: bad\r\nTrace ID: t", "error_codes": [70011]},
     ErrorClass.CONFIGURATION, False),
    ({"error": "temporarily_unavailable", "error_codes": [50196]}, ErrorClass.TEMPORARY, False),
])
def test_entra_token_errors(body: dict, cls: ErrorClass, reauth: bool) -> None:
    err = token_error(body, "the refresh token", reauth_possible=True)
    assert err.error_class is cls and bool(err.details.get("reauth")) is reauth
    assert "Trace ID" not in err.message


def test_google_refresh_failures() -> None:
    revoked = gexc.RefreshError("invalid_grant: Token has been expired or revoked.",
                                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    err = _refresh_failure(revoked, "the refresh token")
    assert err.error_class is ErrorClass.CONFIGURATION and err.details["reauth"] and err.code == "invalid_grant"
    busy = _refresh_failure(TokenEndpointUnavailable(503, 1.5), "the refresh token")
    assert busy.error_class is ErrorClass.TEMPORARY and busy.retry_after == 1.5
    client = _refresh_failure(gexc.RefreshError("x", {"error": "invalid_client"}), "the refresh token")
    assert client.error_class is ErrorClass.CONFIGURATION and "reauth" not in client.details
