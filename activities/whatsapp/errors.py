"""Classify Graph API answers by error code (not HTTP status), per Meta's error-code table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import ErrorClass, IntegrationError

TEMPORARY_CODES = {1, 2, 4, 80007, 130429, 131056, 131000, 131016, 131057, 133000, 133004, 133016, 133015}
CONFIGURATION_CODES = {
    0, 3, 10, 190, 368, 130497, 131030, 131031, 131042, 132001, 132015, 132016,
    133010, 133005, 133006, 133009, *range(200, 300),
}
# The access token is invalid or expired: an administrator must replace it.
REAUTH_CODES = {0, 190}
PERMANENT_CODES = {
    100, 131008, 131009, 131021, 131026, 131047, 131048, 131049, 131050, 131051, 131052, 131053,
    130472, 131062, 132000, 132005, 132007, 132008, 132012,
}


def classify_code(code: int | None, status: int, is_transient: bool | None = None) -> ErrorClass:
    if code in TEMPORARY_CODES:
        return ErrorClass.TEMPORARY
    if code in CONFIGURATION_CODES:
        return ErrorClass.CONFIGURATION
    if code in PERMANENT_CODES:
        return ErrorClass.PERMANENT
    if is_transient or status >= 500 or status == 429:
        return ErrorClass.TEMPORARY
    if status in (401, 403):
        return ErrorClass.CONFIGURATION
    return ErrorClass.PERMANENT


def error_from_graph(body: Mapping[str, Any], status: int) -> IntegrationError:
    """An IntegrationError from a Graph error body (or an async webhook error object)."""
    err = body.get("error", body) if isinstance(body, Mapping) else {}
    code = err.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    details = (err.get("error_data") or {}).get("details") or err.get("details")
    message = str(err.get("message") or err.get("title") or f"HTTP {status}")
    if details and details not in message:
        message = f"{message}: {details}"
    cls = classify_code(code, status, err.get("is_transient"))
    extra: dict[str, Any] = {"status": status}
    if err.get("error_subcode") is not None:
        extra["subcode"] = err.get("error_subcode")
    if code in REAUTH_CODES:
        extra["reauth"] = True
    return IntegrationError(message, code=code if code is not None else f"http_{status}", error_class=cls,
                            details=extra)


def classify(status: int, headers: Mapping[str, str], body: Any) -> IntegrationError | None:
    """None for success; otherwise the classified error."""
    if 200 <= status < 300 and not (isinstance(body, Mapping) and "error" in body):
        return None
    if isinstance(body, Mapping) and "error" in body:
        return error_from_graph(body, status)
    cls = ErrorClass.TEMPORARY if status >= 500 or status == 429 else ErrorClass.PERMANENT
    return IntegrationError(f"unexpected HTTP {status} from Graph API", code=f"http_{status}", error_class=cls)
