"""Who a message goes to: an E.164 phone number (validated with phonenumbers) or a business-scoped user id
(BSUID) of a customer who shares no number. Anything else is a permanent error, never retried or sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from core.errors import PermanentError

# Meta's BSUID: a two-letter country code, a period, then up to 128 alphanumerics ("US.13491208655302741918");
# a parent BSUID shared by several portfolios has "ENT." after the country ("US.ENT.11815799212886844830").
BSUID_RE = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")


def is_bsuid(value: str | None) -> bool:
    return bool(value) and BSUID_RE.match(value or "") is not None


def normalize_e164(number: str, field: str = "to") -> str:
    """'+1 650-555-1234' → '16505551234' (the wa_id form Cloud API answers with)."""
    raw = (number or "").strip()
    if not raw.startswith("+"):
        raw = "+" + raw if raw.isdigit() else raw
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise PermanentError(f"{field}: {number!r} is not a phone number in E.164 form ({exc})",
                             code="invalid_phone_number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise PermanentError(f"{field}: {number!r} is not a valid phone number", code="invalid_phone_number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


@dataclass(frozen=True)
class Recipient:
    """How the Cloud API addresses a customer: `to` (phone number) or `recipient` (BSUID)."""

    kind: Literal["phone", "user_id"]
    value: str

    @property
    def key(self) -> str:
        """The customer key used by the store, limits and conversations (wa_id or BSUID)."""
        return self.value

    def address(self) -> dict[str, str]:
        """The request's addressing fields."""
        return {"to": self.value} if self.kind == "phone" else {"recipient": self.value}


def recipient(to: str, field: str = "to") -> Recipient:
    """A phone number (any E.164 spelling) or a BSUID; empty, partial or malformed values are refused."""
    value = (to or "").strip()
    if not value or value == "+":
        raise PermanentError(f"{field}: no recipient given (a phone number in E.164 form or a BSUID)",
                             code="invalid_recipient", details={"field": field})
    if is_bsuid(value):
        return Recipient("user_id", value)
    if re.match(r"^[A-Za-z]{2}\.", value):
        raise PermanentError(f"{field}: {to!r} is not a valid business-scoped user id (CC.digits)",
                             code="invalid_recipient", details={"field": field})
    return Recipient("phone", normalize_e164(value, field))


def country_calling_code(wa_id: str) -> int:
    """The country calling code of a wa_id (digits only), 0 when unknown."""
    try:
        return phonenumbers.parse("+" + wa_id.lstrip("+"), None).country_code or 0
    except phonenumbers.NumberParseException:
        return 0


def customer_country_code(customer: str) -> int:
    """The calling code of a wa_id, or of the country a BSUID starts with (for the rate card); 0 when unknown."""
    if is_bsuid(customer):
        return phonenumbers.country_code_for_region(customer[:2]) or 0
    return country_calling_code(customer)
