"""Recurrence as RFC 5545 lines: normalisation for providers, Graph pattern/range ⇄ RRULE, and expansion.

Canonical form (what `normalize` returns and what a Graph round trip gives back, so round trips compare
equal as text): one RRULE with its implicit parts spelled out (a weekly rule names its BYDAY, a monthly rule
its BYMONTHDAY, a yearly rule its BYMONTH and BYMONTHDAY), INTERVAL and WKST omitted at their defaults, and
for a zoned start an UNTIL in UTC (RFC 5545 §3.3.10) at the end (23:59:59 local) of the last day that can
hold an occurrence. All-day series use a DATE UNTIL. EXDATE/RDATE carry the event's TZID (or VALUE=DATE).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from activities.calendar.tz import UTC, localize, to_windows, zone
from core.errors import PermanentError

PARTS_ORDER = ("FREQ", "UNTIL", "COUNT", "INTERVAL", "BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY",
               "BYHOUR", "BYMINUTE", "BYSECOND", "BYSETPOS", "WKST")
FREQS = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
GRAPH_DAYS = dict(zip(DAYS, ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
                      strict=True))
DAYS_OF_GRAPH = {v: k for k, v in GRAPH_DAYS.items()}
GRAPH_INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
INDEX_OF_GRAPH = {v: k for k, v in GRAPH_INDEX.items()}
_DAY_GRANULAR = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}

Start = datetime | date


def _err(message: str, code: str = "invalid_recurrence", **details: Any) -> PermanentError:
    return PermanentError(f"recurrence: {message}", code=code, details={"field": "recurrence", **details})


def _unsupported(message: str, **details: Any) -> PermanentError:
    return PermanentError(f"recurrence: Microsoft Graph cannot express {message}", code="unsupported_by_provider",
                          details={"field": "recurrence", "provider": "outlook", **details})


# ---- RRULE text ----------------------------------------------------------------------------------
def parse_rrule(line: str) -> dict[str, str]:
    """The parts of one RRULE line (`RRULE:` prefix optional), validated for shape."""
    body = line.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    parts: dict[str, str] = {}
    for chunk in body.split(";"):
        if not chunk.strip():
            continue
        if "=" not in chunk:
            raise _err(f"malformed RRULE part {chunk!r} in {line!r}")
        key, value = (s.strip().upper() for s in chunk.split("=", 1))
        if key not in PARTS_ORDER:
            raise _err(f"unknown RRULE part {key} in {line!r}")
        if key in parts:
            raise _err(f"RRULE part {key} given twice in {line!r}")
        parts[key] = value
    if parts.get("FREQ") not in FREQS:
        raise _err(f"RRULE needs FREQ (one of {', '.join(FREQS)}) in {line!r}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _err("COUNT and UNTIL must not both be given (RFC 5545)")
    for key in ("COUNT", "INTERVAL"):
        if key in parts and (not parts[key].isdigit() or int(parts[key]) < 1):
            raise _err(f"{key} must be a positive integer, got {parts[key]!r}")
    for token in _split(parts.get("BYDAY")):
        if token.lstrip("+-0123456789") not in DAYS:
            raise _err(f"BYDAY value {token!r} is not a weekday (MO..SU with an optional ordinal)")
    if "WKST" in parts and parts["WKST"] not in DAYS:
        raise _err(f"WKST must be one of {', '.join(DAYS)}")
    return parts


def format_rrule(parts: dict[str, str]) -> str:
    return "RRULE:" + ";".join(f"{k}={parts[k]}" for k in PARTS_ORDER if k in parts)


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _ordinal_day(token: str) -> tuple[int | None, str]:
    day = token.lstrip("+-0123456789")
    num = token[: len(token) - len(day)]
    return (int(num) if num not in ("", "+", "-") else None), day


def _local_start(start: Start, tz: ZoneInfo) -> datetime:
    if isinstance(start, datetime):
        return start.astimezone(tz)
    return datetime.combine(start, time(0, 0))


# ---- UNTIL --------------------------------------------------------------------------------------
def _parse_until(value: str, start: Start, tz: ZoneInfo) -> datetime | date:
    """UNTIL as a UTC instant (zoned start) or a date (all-day start)."""
    try:
        if len(value) == 8:
            day = datetime.strptime(value, "%Y%m%d").date()
            if isinstance(start, datetime):
                # A date UNTIL on a zoned series: through the end of that local day.
                return localize(datetime.combine(day, time(23, 59, 59)), tz, "shift", "UNTIL").astimezone(UTC)
            return day
        if value.endswith("Z"):
            instant = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return instant if isinstance(start, datetime) else instant.date()
        wall = datetime.strptime(value, "%Y%m%dT%H%M%S")
    except ValueError:
        raise _err(f"UNTIL {value!r} is not YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ") from None
    if isinstance(start, datetime):
        # A local UNTIL on a zoned start is not allowed by RFC 5545; read it in the event's zone.
        return localize(wall, tz, "shift", "UNTIL").astimezone(UTC)
    return wall.date()


def _last_day(until: datetime, start_local: datetime, tz: ZoneInfo) -> date:
    """The last local date whose occurrence (at the start's wall time) is not after `until`."""
    u_local = until.astimezone(tz)
    occurrence = localize(datetime.combine(u_local.date(), start_local.time()), tz, "shift", "UNTIL")
    return u_local.date() if occurrence <= until else u_local.date() - timedelta(days=1)


def _end_of_day_utc(day: date, tz: ZoneInfo) -> str:
    return localize(datetime.combine(day, time(23, 59, 59)), tz, "shift", "UNTIL").astimezone(UTC).strftime(
        "%Y%m%dT%H%M%SZ")


# ---- canonical form ------------------------------------------------------------------------------
def _canonical(parts: dict[str, str], start: Start, tz: ZoneInfo) -> dict[str, str]:
    p = dict(parts)
    local = _local_start(start, tz)
    weekday = DAYS[local.weekday()]
    by_other = {k for k in p if k.startswith("BY") and k != "BYDAY"}
    if p["FREQ"] == "DAILY" and "BYDAY" in p and p.get("INTERVAL", "1") == "1" and not by_other \
            and all(_ordinal_day(t)[0] is None for t in _split(p["BYDAY"])):
        p["FREQ"] = "WEEKLY"  # "every weekday" is the same series as a weekly rule on those days
    if p["FREQ"] == "WEEKLY" and "BYDAY" not in p and not by_other:
        p["BYDAY"] = weekday
    if p["FREQ"] == "MONTHLY" and not ({"BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"} & set(p)):
        p["BYMONTHDAY"] = str(local.day)
    if p["FREQ"] == "YEARLY" and not ({"BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"} & set(p)):
        p.setdefault("BYMONTH", str(local.month))
        p["BYMONTHDAY"] = str(local.day)
    if "BYDAY" in p:
        tokens = [_ordinal_day(t) for t in _split(p["BYDAY"])]
        tokens.sort(key=lambda t: (t[0] or 0, DAYS.index(t[1])))
        p["BYDAY"] = ",".join(f"{n if n is not None else ''}{d}" for n, d in tokens)
    if p.get("INTERVAL") == "1":
        del p["INTERVAL"]
    if p.get("WKST") == "MO":
        del p["WKST"]
    if "UNTIL" in p:
        until = _parse_until(p["UNTIL"], start, tz)
        if isinstance(until, datetime):
            fine_grained = p["FREQ"] not in _DAY_GRANULAR or {"BYHOUR", "BYMINUTE", "BYSECOND"} & set(p)
            p["UNTIL"] = (until.strftime("%Y%m%dT%H%M%SZ") if fine_grained
                          else _end_of_day_utc(_last_day(until, local, tz), tz))
        else:
            p["UNTIL"] = until.strftime("%Y%m%d")
    return p


def _parse_date_line(name: str, line: str, start: Start, tz: ZoneInfo) -> list[datetime | date]:
    head, _, values = line.partition(":")
    if not values:
        raise _err(f"{name} line {line!r} has no values")
    params: dict[str, str] = {}
    for item in head.split(";")[1:]:
        if "=" in item:
            k, v = item.split("=", 1)
            params[k.upper()] = v
    value_tz = zone(params["TZID"], f"recurrence {name} TZID") if "TZID" in params else tz
    out: list[datetime | date] = []
    for raw in _split(values.strip()):
        try:
            if params.get("VALUE", "").upper() == "DATE" or len(raw) == 8:
                day = datetime.strptime(raw, "%Y%m%d").date()
                out.append(day if not isinstance(start, datetime)
                           else localize(datetime.combine(day, _local_start(start, tz).time()), tz, "shift", name))
            elif raw.endswith("Z"):
                instant = datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                out.append(instant if isinstance(start, datetime) else instant.date())
            else:
                wall = datetime.strptime(raw, "%Y%m%dT%H%M%S")
                out.append(localize(wall, value_tz, "shift", name) if isinstance(start, datetime) else wall.date())
        except ValueError:
            raise _err(f"{name} value {raw!r} is not a date or date-time") from None
    return out


def _format_dates(name: str, values: list[datetime | date], tz: ZoneInfo) -> str:
    if values and isinstance(values[0], datetime):
        stamps = ",".join(v.astimezone(tz).strftime("%Y%m%dT%H%M%S") for v in values if isinstance(v, datetime))
        return f"{name};TZID={tz.key}:{stamps}"
    return f"{name};VALUE=DATE:" + ",".join(v.strftime("%Y%m%d") for v in values)


def normalize(lines: list[str], start: Start, tz: ZoneInfo) -> list[str]:
    """Validate recurrence lines against the event start and return them in canonical form."""
    rrules: list[dict[str, str]] = []
    dated: dict[str, list[datetime | date]] = {"EXDATE": [], "RDATE": []}
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if name == "RRULE":
            rrules.append(parse_rrule(line))
        elif name in dated:
            dated[name].extend(_parse_date_line(name, line, start, tz))
        elif name in ("DTSTART", "DTEND"):
            raise _err("DTSTART and DTEND lines are not allowed; the event's start and end give them")
        elif name == "EXRULE":
            raise _err("EXRULE is deprecated by RFC 5545 and not accepted; use EXDATE")
        else:
            raise _err(f"unknown recurrence line {line!r} (RRULE, EXDATE or RDATE)")
    if len(rrules) > 1:
        raise _err("one RRULE per event")
    if not rrules and not dated["RDATE"]:
        if dated["EXDATE"]:
            raise _err("EXDATE without an RRULE or RDATE")
        return []
    out: list[str] = [format_rrule(_canonical(rrules[0], start, tz))] if rrules else []
    for name in ("RDATE", "EXDATE"):
        if dated[name]:
            out.append(_format_dates(name, sorted(dated[name], key=_sort_key), tz))
    _check_start_is_occurrence(out, start, tz)
    return out


def _sort_key(v: datetime | date) -> float:
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.combine(v, time(0, 0), tzinfo=UTC).timestamp()


# ---- expansion -----------------------------------------------------------------------------------
def ruleset(lines: list[str], start: Start, tz: ZoneInfo) -> du.rruleset:
    """A dateutil rruleset for normalised lines; timed series expand in the zone (wall time kept across DST)."""
    dtstart = _local_start(start, tz)
    rset = du.rruleset()
    for line in lines:
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if name == "RRULE":
            parts = parse_rrule(line)
            try:
                rset.rrule(du.rrulestr(line[6:], dtstart=dtstart))  # type: ignore[arg-type]
            except ValueError as exc:
                raise _err(f"{exc} in {format_rrule(parts)!r}") from None
        elif name in ("EXDATE", "RDATE"):
            for v in _parse_date_line(name, line, start, tz):
                value = v.astimezone(tz) if isinstance(v, datetime) else datetime.combine(v, time(0, 0))
                (rset.exdate if name == "EXDATE" else rset.rdate)(value)
    if any(line.upper().startswith("RDATE") for line in lines) or not any(
            line.upper().startswith("RRULE") for line in lines):
        rset.rdate(dtstart)
    return rset


def _check_start_is_occurrence(lines: list[str], start: Start, tz: ZoneInfo) -> None:
    rset = ruleset(lines, start, tz)
    first = next(iter(rset), None)
    dtstart = _local_start(start, tz)
    if first is None:
        raise _err("the rule has no occurrences (UNTIL before the start, or every occurrence excluded)")
    has_rrule = any(line.startswith("RRULE") for line in lines)
    if has_rrule and not any(line.startswith("RDATE") for line in lines):
        rule_only = du.rrulestr(lines[0][6:], dtstart=dtstart)
        first_of_rule = next(iter(rule_only), None)
        if first_of_rule != dtstart:
            shown = dtstart.isoformat() if isinstance(start, datetime) else dtstart.strftime("%A %Y-%m-%d")
            raise _err(f"the event's start ({shown}) is not an occurrence of {lines[0]}; start the event on its "
                       "first occurrence")


def expand(lines: list[str], start: Start, tz: ZoneInfo, window_start: datetime, window_end: datetime,
           limit: int = 1000) -> list[datetime]:
    """Occurrence starts (aware, or naive midnights for all-day series) in [window_start, window_end)."""
    rset = ruleset(lines, start, tz) if lines else None
    if rset is None:
        return [_local_start(start, tz)]
    out: list[datetime] = []
    timed = isinstance(start, datetime)
    lo = window_start if timed else window_start.replace(tzinfo=None)
    hi = window_end if timed else window_end.replace(tzinfo=None)
    for occ in rset.xafter(lo - timedelta(seconds=1), count=limit, inc=True):
        if occ >= hi:
            break
        out.append(occ)
    return out


# ---- Microsoft Graph pattern/range ---------------------------------------------------------------
def to_graph(lines: list[str], start: Start, tz: ZoneInfo) -> dict[str, Any]:
    """Graph `recurrence` for canonical lines; what Graph cannot express is a PermanentError."""
    rules = [line for line in lines if line.startswith("RRULE")]
    others = [line.split(";", 1)[0].split(":", 1)[0] for line in lines if not line.startswith("RRULE")]
    if others:
        raise _unsupported(f"{'/'.join(sorted(set(others)))} in a new series (exceptions are made by editing or "
                           "deleting single occurrences)", lines=others)
    if len(rules) != 1:
        raise _err("one RRULE is required")
    p = parse_rrule(rules[0])
    local = _local_start(start, tz)
    for key in ("BYSECOND", "BYMINUTE", "BYHOUR", "BYYEARDAY", "BYWEEKNO"):
        if key in p:
            raise _unsupported(f"{key} (patterns repeat whole days)", part=key)
    freq, interval = p["FREQ"], int(p.get("INTERVAL", "1"))
    days = [_ordinal_day(t) for t in _split(p.get("BYDAY"))]
    pattern: dict[str, Any] = {"interval": interval}
    if freq == "DAILY":
        if {"BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS"} & set(p):
            raise _unsupported("a daily rule with BY parts unless it is every N days or every weekday")
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        if {"BYMONTHDAY", "BYMONTH", "BYSETPOS"} & set(p) or any(n is not None for n, _ in days):
            raise _unsupported("a weekly rule restricted by month, day of month, position or ordinal weekday")
        pattern.update(type="weekly", daysOfWeek=[GRAPH_DAYS[d] for _, d in days],
                       firstDayOfWeek=GRAPH_DAYS[p.get("WKST", "MO")])
    elif freq in ("MONTHLY", "YEARLY"):
        prefix = "absolute" if "BYMONTHDAY" in p else "relative"
        pattern["type"] = prefix + ("Monthly" if freq == "MONTHLY" else "Yearly")
        if freq == "YEARLY":
            months = _split(p.get("BYMONTH"))
            if len(months) != 1:
                raise _unsupported("a yearly rule on several months", part="BYMONTH")
            pattern["month"] = int(months[0])
        elif "BYMONTH" in p:
            raise _unsupported("a monthly rule restricted to some months", part="BYMONTH")
        if prefix == "absolute":
            mdays = _split(p["BYMONTHDAY"])
            if len(mdays) != 1 or not 1 <= int(mdays[0]) <= 31 or "BYDAY" in p or "BYSETPOS" in p:
                raise _unsupported("several or negative days of the month, or days of month with weekdays",
                                   part="BYMONTHDAY")
            pattern["dayOfMonth"] = int(mdays[0])
        else:
            pattern.update(_relative(days, p.get("BYSETPOS")))
    else:
        raise _unsupported(f"FREQ={freq} (the finest Graph pattern is daily)", part="FREQ")
    rng: dict[str, Any] = {"startDate": local.date().isoformat(), "recurrenceTimeZone": to_windows(tz.key)}
    if "COUNT" in p:
        rng.update(type="numbered", numberOfOccurrences=int(p["COUNT"]))
    elif "UNTIL" in p:
        until = _parse_until(p["UNTIL"], start, tz)
        end_date = _last_day(until, local, tz) if isinstance(until, datetime) else until
        rng.update(type="endDate", endDate=end_date.isoformat())
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


def _relative(days: list[tuple[int | None, str]], setpos: str | None) -> dict[str, Any]:
    if not days:
        raise _unsupported("a monthly or yearly rule without a day")
    ordinals = {n for n, _ in days}
    if setpos is not None:
        if ordinals != {None} or "," in setpos:
            raise _unsupported("BYSETPOS combined with ordinal weekdays or several positions", part="BYSETPOS")
        index = int(setpos)
    elif len(ordinals) == 1 and None not in ordinals:
        index = next(iter(ordinals))  # type: ignore[assignment]
    else:
        raise _unsupported("weekdays without one shared ordinal (first..fourth or last)", part="BYDAY")
    if index not in GRAPH_INDEX:
        raise _unsupported(f"the ordinal {index} (only first..fourth and last)", part="BYDAY")
    return {"daysOfWeek": [GRAPH_DAYS[d] for _, d in days], "index": GRAPH_INDEX[index]}


def from_graph(rec: dict[str, Any], start: Start, tz: ZoneInfo) -> list[str]:
    """Canonical RRULE lines for a Graph `recurrence` object."""
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    kind = pattern.get("type")
    interval = int(pattern.get("interval") or 1)
    if interval < 1:
        raise _err(f"Graph pattern interval {interval} must be at least 1")
    p: dict[str, str] = {}
    try:
        days = [DAYS_OF_GRAPH[d.lower()] for d in pattern.get("daysOfWeek") or []]
        if kind == "daily":
            p["FREQ"] = "DAILY"
        elif kind == "weekly":
            p.update(FREQ="WEEKLY", BYDAY=",".join(days) or DAYS[_local_start(start, tz).weekday()],
                     WKST=DAYS_OF_GRAPH[(pattern.get("firstDayOfWeek") or "sunday").lower()])
        elif kind in ("absoluteMonthly", "absoluteYearly"):
            p.update(FREQ="MONTHLY" if kind == "absoluteMonthly" else "YEARLY",
                     BYMONTHDAY=str(int(pattern["dayOfMonth"])))
        elif kind in ("relativeMonthly", "relativeYearly"):
            index = INDEX_OF_GRAPH[(pattern.get("index") or "first").lower()]
            p["FREQ"] = "MONTHLY" if kind == "relativeMonthly" else "YEARLY"
            if len(days) == 1:
                p["BYDAY"] = f"{index}{days[0]}"
            else:
                p.update(BYDAY=",".join(days), BYSETPOS=str(index))
        else:
            raise _err(f"unknown Graph pattern type {kind!r}")
        if kind in ("absoluteYearly", "relativeYearly"):
            p["BYMONTH"] = str(int(pattern["month"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _err(f"Graph pattern {pattern!r} is incomplete or invalid ({exc})") from None
    if interval != 1:
        p["INTERVAL"] = str(interval)
    rtype = rng.get("type") or "noEnd"
    if rtype == "numbered":
        count = int(rng.get("numberOfOccurrences") or 0)
        if count < 1:
            raise _err("Graph numbered range needs numberOfOccurrences >= 1")
        p["COUNT"] = str(count)
    elif rtype == "endDate":
        end = date.fromisoformat(str(rng.get("endDate")))
        p["UNTIL"] = _end_of_day_utc(end, tz) if isinstance(start, datetime) else end.strftime("%Y%m%d")
    elif rtype != "noEnd":
        raise _err(f"unknown Graph range type {rtype!r}")
    return [format_rrule(_canonical(p, start, tz))]
