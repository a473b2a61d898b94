"""Classify Graph answers by the OData `error.code` first and the HTTP status second (never the message)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import ConfigurationError, IntegrationError, PermanentError, TemporaryError

THROTTLE_CODES = {"TooManyRequests", "ApplicationThrottled", "activityLimitReached", "MailboxConcurrency",
                  "ErrorServerBusy"}
ETAG_CODES = {"ErrorIrresolvableConflict", "resourceModified", "PreconditionFailed"}
MAILBOX_CODES = {"MailboxNotEnabledForRESTAPI", "MailboxNotSupportedForRESTAPI", "ErrorMailboxNotEnabled"}
NOT_FOUND_CODES = {"ErrorItemNotFound", "itemNotFound", "ResourceNotFound", "ErrorInvalidIdMalformed"}


def code_of(body: Any) -> tuple[str | None, str]:
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return None, ""
    return (str(err["code"]) if err.get("code") else None), str(err.get("message") or "")


def classify(status: int, headers: Mapping[str, str], body: Any) -> IntegrationError | None:
    """None for success; otherwise the classified error (reference §3.3)."""
    if 200 <= status < 300:
        return None
    code, message = code_of(body)
    text = f"{message or f'HTTP {status}'}" + (f" ({code})" if code else "")
    details: dict[str, Any] = {"status": status}
    label = code or f"http_{status}"
    if code in MAILBOX_CODES:
        return ConfigurationError(f"{text}: the mailbox cannot be used through Graph (inactive, soft-deleted or "
                                  "on-premises)", code=label, details=details)
    if status == 429 or code in THROTTLE_CODES:
        # Retry-After may be fractional ("2.128") or absent; the pipeline reads it, else jittered backoff.
        return TemporaryError(text, code=label, details=details)
    if status == 401:
        return ConfigurationError(text, code=label, details={**details, "refresh": True, "reauth": True})
    if status == 403:
        return ConfigurationError(f"{text}: the app lacks permission for this mailbox or calendar", code=label,
                                  details=details)
    if status == 412 or code in ETAG_CODES:
        return PermanentError(f"{text}: the event changed since its changeKey was read; fetch it again and "
                              "re-apply the change", code="etag_mismatch", details={**details, "graph_code": code})
    if code == "ErrorInvalidUser":
        return ConfigurationError(f"{text}: check the connection's mailbox", code=label, details=details)
    if code in NOT_FOUND_CODES or (status == 404 and code is None):
        return PermanentError(text, code="notFound", details=details)
    if status == 404:
        return PermanentError(text, code=label, details=details)
    if status == 410:
        return PermanentError(text, code=label, details={**details, "full_sync": True})
    if status in (423, 503, 504) or status >= 500:
        return TemporaryError(text, code=label, details=details)
    return PermanentError(text, code=label, details=details)
