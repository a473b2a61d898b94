"""Cost per delivered message: the rate table (default shipped, operator-replaceable) and its cache."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities.whatsapp.store import Rates, WhatsAppStore

if TYPE_CHECKING:
    from core.runtime import Runtime

DEFAULT_RATES_FILE = Path(__file__).with_name("rates_default.json")
CACHE_KEY = "whatsapp.rates"
CACHE_SECONDS = 60.0


def default_rates() -> tuple[list[dict[str, Any]], str]:
    doc = json.loads(DEFAULT_RATES_FILE.read_text())
    return list(doc["rates"]), str(doc["source"])


def as_rates(rows: list[dict[str, Any]]) -> Rates:
    return {(str(r["country_code"]), str(r["category"]).lower()): (float(r["price"]), str(r.get("currency") or "USD"))
            for r in rows}


def parse_rate_file(path: Path) -> list[dict[str, Any]]:
    """JSON (`{"rates": [...]}` or a list) or CSV with columns country_code,category,price[,currency]."""
    raw = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = [dict(r) for r in csv.DictReader(io.StringIO(raw))]
    else:
        doc = json.loads(raw)
        rows = doc["rates"] if isinstance(doc, dict) else doc
    out = []
    for i, r in enumerate(rows):
        try:
            out.append({"country_code": str(r["country_code"]).lstrip("+"), "category": str(r["category"]).lower(),
                        "price": float(r["price"]), "currency": str(r.get("currency") or "USD").upper()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"rate row {i}: needs country_code, category, price ({exc})") from None
    return out


async def current_rates(rt: Runtime) -> Rates:
    """The operator's table when loaded, else the shipped default (cached briefly per process)."""
    hit = rt.extras.get(CACHE_KEY)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    rates = await rt.store.run(WhatsAppStore(rt.store).rates)
    if not rates:
        rates = as_rates(default_rates()[0])
    rt.extras[CACHE_KEY] = (time.monotonic() + CACHE_SECONDS, rates)
    return rates


def forget_rates(rt: Runtime) -> None:
    rt.extras.pop(CACHE_KEY, None)
