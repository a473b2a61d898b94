"""Time zones for calendar events: IANA zones via zoneinfo, DST gap/fold rules, Windows⇄IANA names (CLDR).

Rules (docs/calendars.md repeats them):
- A wall-clock time that does not exist (the spring-forward gap) is rejected (`dst_gap_policy="reject"`,
  the default) or moved forward by the length of the gap (`"shift"`: 02:30 → 03:30), as
  `dateutil.tz.resolve_imaginary` does.
- An ambiguous wall-clock time (the fall-back hour) means its FIRST occurrence (PEP 495 `fold=0`, the
  earlier instant, still on the pre-transition offset). A time given with an explicit offset is never
  ambiguous: the offset picks the occurrence.
- Windows zone names (Microsoft Graph) map to IANA names through CLDR's windowsZones table as shipped in
  `tzlocal.windows_tz` (kept current by tzlocal's maintainers), never through a hand-written list.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil import tz as dtz
from tzlocal.windows_tz import tz_win, win_tz

from core.errors import PermanentError

GapPolicy = Literal["reject", "shift"]
UTC = ZoneInfo("UTC")

# Names zoneinfo knows that depend on the host or mean nothing for a calendar.
_REFUSED = {"localtime", "Factory"}


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str | None, field: str = "timezone") -> ZoneInfo:
    """The IANA zone `name` (a Windows name is accepted and mapped); unknown names are a PermanentError."""
    if not name or not isinstance(name, str):
        raise PermanentError(f"{field}: a time zone name is required (an IANA name such as 'Europe/Berlin')",
                             code="unknown_time_zone", details={"field": field})
    key = name.strip()
    if key in win_tz and key not in _iana_names():
        key = win_tz[key]
    if key in _REFUSED or key not in _iana_names():
        raise PermanentError(f"{field}: unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')",
                             code="unknown_time_zone", details={"field": field, "value": name})
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise PermanentError(f"{field}: unknown time zone {name!r}", code="unknown_time_zone",
                             details={"field": field, "value": name}) from None


def zone_name(name: str | None, field: str = "timezone") -> str:
    """The canonical key of a zone name (Windows names become their CLDR IANA zone)."""
    return zone(name, field).key


def localize(wall: datetime, tz: ZoneInfo, policy: GapPolicy = "reject", field: str = "time") -> datetime:
    """A naive wall-clock time in `tz` as an aware datetime, applying the gap and ambiguity rules."""
    if wall.tzinfo is not None:
        raise ValueError("localize takes a naive wall-clock time")
    aware = wall.replace(tzinfo=tz, fold=0)  # fold=0: an ambiguous time is its first occurrence
    if not dtz.datetime_exists(aware):
        if policy == "reject":
            raise PermanentError(
                f"{field}: {wall.isoformat(timespec='minutes')} does not exist in {tz.key} (the clocks skip it "
                "for daylight saving time); choose another time or set dst_gap_policy='shift'",
                code="dst_gap", details={"field": field, "value": wall.isoformat(), "time_zone": tz.key},
            )
        resolved: datetime = dtz.resolve_imaginary(aware)
        return resolved
    return aware


def is_second_occurrence(value: datetime) -> bool:
    """True when an aware time is the later of two identical wall-clock times (fall-back hour, fold=1)."""
    tzinfo = value.tzinfo
    if tzinfo is None:
        return False
    wall = value.replace(tzinfo=None)
    first = wall.replace(tzinfo=tzinfo, fold=0)
    return bool(dtz.datetime_ambiguous(first)) and first.utcoffset() != value.utcoffset()


def parse_datetime(value: str, tz: ZoneInfo, policy: GapPolicy = "reject", field: str = "startTime") -> datetime:
    """An ISO 8601 date-time: with an offset it is that instant (shown in `tz`); without one it is a
    wall-clock time in `tz`, subject to the gap rule."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise PermanentError(f"{field}: a date-time is required", code="invalid_time", details={"field": field})
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        raise PermanentError(f"{field}: {value!r} is a date without a time; set isAllDay=true for an all-day "
                             "event or give a time (e.g. 2024-06-01T09:00:00)", code="invalid_time",
                             details={"field": field})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PermanentError(f"{field}: {value!r} is not an ISO 8601 date-time (e.g. 2024-06-01T09:00:00 or "
                             "2024-06-01T09:00:00+02:00)", code="invalid_time", details={"field": field}) from None
    if parsed.tzinfo is None:
        return localize(parsed, tz, policy, field)
    return parsed.astimezone(tz)


def parse_date(value: str, field: str = "startTime") -> date:
    """The calendar date of an all-day boundary, taken as written: never shifted through a time zone
    (a midnight date-time with any offset is accepted; another time of day is refused)."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PermanentError(f"{field}: {value!r} is not a date (YYYY-MM-DD)", code="invalid_date",
                             details={"field": field}) from None
    if parsed.time() != time(0, 0):
        raise PermanentError(f"{field}: an all-day event takes dates (YYYY-MM-DD), got the time "
                             f"{parsed.time().isoformat()} in {value!r}", code="invalid_date",
                             details={"field": field})
    return parsed.date()


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight of `day` (a zone whose clocks skip midnight gets the first instant of the day)."""
    return localize(datetime.combine(day, time(0, 0)), tz, "shift", "date")


# ---- Windows ⇄ IANA ---------------------------------------------------------------------------
def to_windows(iana: str, field: str = "timezone") -> str:
    """The Windows zone name Graph uses for an IANA zone (CLDR windowsZones)."""
    key = zone(iana, field).key
    name = tz_win.get(key)
    if name is None:
        # A link name CLDR does not list (e.g. 'GMT'): try zones with identical rules at a few instants.
        name = _equivalent_windows(key)
    if name is None:
        raise PermanentError(f"{field}: time zone {iana!r} has no Windows equivalent that Microsoft Graph accepts",
                             code="unsupported_time_zone", details={"field": field, "value": iana})
    return name


def from_windows(name: str, hint: str | None = None, field: str = "timeZone") -> str:
    """The IANA zone for a Graph zone name (Windows or IANA); `hint` wins when it is the same Windows zone,
    so a round trip keeps the caller's own IANA spelling (Asia/Kolkata rather than CLDR's Asia/Calcutta)."""
    if name in _iana_names() and name not in win_tz:
        return name
    iana = win_tz.get(name)
    if iana is None:
        raise PermanentError(f"{field}: unknown Windows time zone {name!r}", code="unknown_time_zone",
                             details={"field": field, "value": name})
    if hint and hint in _iana_names() and tz_win.get(hint) == name:
        return hint
    return iana


def _equivalent_windows(key: str) -> str | None:
    """'UTC' for a zone that is UTC at every probed instant (GMT, Etc/GMT); other names CLDR does not list
    are refused rather than guessed (two zones agreeing on some dates can still differ on others)."""
    probe = [datetime(y, m, 15, 12, tzinfo=UTC) for y in range(2000, 2031) for m in (1, 4, 7, 10)]
    if all(p.astimezone(ZoneInfo(key)).utcoffset() == timedelta(0) for p in probe):
        return "UTC"
    return None


def day_range(start: datetime, end: datetime, tz: ZoneInfo) -> list[date]:
    """Every local date in `tz` touched by [start, end], with one day of margin on each side."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
