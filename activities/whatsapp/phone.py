"""E.164 validation with phonenumbers: invalid numbers are permanent errors, never retried."""

from __future__ import annotations

import phonenumbers

from core.errors import PermanentError


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


def country_calling_code(wa_id: str) -> int:
    """The country calling code of a wa_id (digits only), 0 when unknown."""
    try:
        return phonenumbers.parse("+" + wa_id.lstrip("+"), None).country_code or 0
    except phonenumbers.NumberParseException:
        return 0
