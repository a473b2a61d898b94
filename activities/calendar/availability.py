"""Free/busy arithmetic: working hours in each attendee's zone, free-slot search, conflicts (pure functions).

Intervals are half-open [start, end): a meeting ending at 10:00 does not conflict with one starting at
10:00. Participants whose calendars could not be read (`error`) are unchecked (callers report them): their busy
times are unknown, but the working hours given for them (or their given time zone) still bound the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from activities.calendar.model import WEEKDAYS, BusyInterval, Conflict, ParticipantAvailability, Slot, WorkingHours
from activities.calendar.tz import day_range, localize, zone

Interval = tuple[datetime, datetime]


def _clock(value: str) -> time:
    return time.fromisoformat(value[:8] if len(value) > 8 else value)


def working_intervals(wh: WorkingHours, lo: datetime, hi: datetime) -> list[Interval]:
    """Working periods within [lo, hi); each day's hours are read in the participant's own zone, so
    they follow its DST changes (a gap at the start of the day shifts forward)."""
    tz = zone(wh.time_zone, "working_hours.time_zone")
    start_t, end_t = _clock(wh.start), _clock(wh.end)
    days = {WEEKDAYS.index(d) for d in wh.days}
    out: list[Interval] = []
    for day in day_range(lo, hi, tz):
        if day.weekday() not in days:
            continue
        s = localize(datetime.combine(day, start_t), tz, "shift", "working_hours.start")
        end_day = day if end_t > start_t else day + timedelta(days=1)  # overnight shifts end the next day
        e = localize(datetime.combine(end_day, end_t), tz, "shift", "working_hours.end")
        s, e = max(s, lo), min(e, hi)
        if s < e:
            # UTC from here on: aware arithmetic in one zone is wall-clock arithmetic in Python.
            out.append((s.astimezone(UTC), e.astimezone(UTC)))
    return merge(out)


def merge(intervals: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    cuts = merge(cut)
    for s, e in base:
        cur = s
        for cs, ce in cuts:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def busy_of(p: ParticipantAvailability, tentative_is_busy: bool = True) -> list[Interval]:
    """Busy periods in UTC; `workingElsewhere` is available for meetings (as Graph's findMeetingTimes treats it)."""
    return merge([(b.start.astimezone(UTC), b.end.astimezone(UTC)) for b in p.busy
                  if b.status != "workingElsewhere" and (tentative_is_busy or b.status != "tentative")])


def free_of(p: ParticipantAvailability, lo: datetime, hi: datetime, working_hours_only: bool,
            tentative_is_busy: bool = True) -> list[Interval]:
    base = working_intervals(p.working_hours, lo, hi) if (working_hours_only and p.working_hours) else [(lo, hi)]
    return subtract(base, busy_of(p, tentative_is_busy))


def _align(t: datetime, tz: ZoneInfo, granularity: int) -> datetime:
    """Round up to the next multiple of `granularity` minutes of the local clock in `tz`."""
    local = t.astimezone(tz)
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    step = granularity * 60
    extra = (-seconds) % step
    return t + timedelta(seconds=extra)


def find_slots(participants: Sequence[ParticipantAvailability], lo: datetime, hi: datetime, duration: timedelta,
               *, granularity_minutes: int = 15, align_tz: ZoneInfo | None = None, working_hours_only: bool = True,
               max_slots: int = 5, tentative_is_busy: bool = True, not_before: datetime | None = None) -> list[Slot]:
    """Earliest non-overlapping slots of `duration` when every readable required participant is free."""
    tz = align_tz or ZoneInfo("UTC")
    lo, hi = lo.astimezone(UTC), hi.astimezone(UTC)
    common: list[Interval] = [(max(lo, not_before.astimezone(UTC)) if not_before else lo, hi)]
    optional: list[tuple[str, list[Interval]]] = []
    for p in participants:
        if p.error:
            # Unreadable calendar: when the caller said when (or in which zone) they work, respect that.
            if not (working_hours_only and p.working_hours and p.working_hours_source in ("input", "time_zone")):
                continue
            free = working_intervals(p.working_hours, lo, hi)
        else:
            free = free_of(p, lo, hi, working_hours_only, tentative_is_busy)
        if p.required:
            common = intersect(common, free)
        else:
            optional.append((p.email, free))
    slots: list[Slot] = []
    step = max(duration, timedelta(minutes=granularity_minutes))
    for s, e in common:
        t = _align(s, tz, granularity_minutes)
        while t + duration <= e and len(slots) < max_slots:
            slots.append(Slot(start=t.astimezone(tz), end=(t + duration).astimezone(tz), optional_free=[
                email for email, free in optional if any(fs <= t and t + duration <= fe for fs, fe in free)]))
            t = _align(t + step, tz, granularity_minutes)
        if len(slots) >= max_slots:
            break
    return slots


def conflicts(participants: Sequence[ParticipantAvailability], start: datetime, end: datetime,
              tentative_is_busy: bool = True) -> list[Conflict]:
    """Busy periods of readable required participants that overlap [start, end)."""
    out: list[Conflict] = []
    for p in participants:
        if p.error or not p.required:
            continue
        for b in p.busy:
            if b.status == "workingElsewhere" or not (tentative_is_busy or b.status != "tentative"):
                continue
            if b.start < end and start < b.end:
                out.append(Conflict(email=p.email, start=b.start, end=b.end, status=b.status))
    return out


def clip(busy: Sequence[BusyInterval], lo: datetime, hi: datetime) -> list[BusyInterval]:
    return [b for b in busy if b.start < hi and lo < b.end]
