"""Classify Google Calendar answers by HTTP status and `error.errors[0].reason` (calendar errors guide)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import ConfigurationError, IntegrationError, PermanentError, TemporaryError

RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
# Missing scopes are fixed by consenting again (re-authentication), not by an administrator's setting.
SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
FULL_SYNC_REASONS = {"fullSyncRequired", "updatedMinTooLongAgo"}


def reason_of(body: Any) -> tuple[str | None, str | None, str]:
    """(reason, domain, message) of a Google error body."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return None, None, ""
    errors = err.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], Mapping) else {}
    message = str(err.get("message") or first.get("message") or "")
    return first.get("reason"), first.get("domain"), message


def oauth_error(status: int, body: Any) -> IntegrationError | None:
    """Google's OAuth token endpoint answers RFC 6749 errors ({"error": "invalid_grant", ...}), not API errors."""
    if not isinstance(body, Mapping) or not isinstance(body.get("error"), str) or status >= 500:
        return None
    error = str(body["error"])
    text = f"Google's token endpoint refused: {error}" + (
        f" ({body['error_description']})" if body.get("error_description") else "")
    if error in ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied"):
        return ConfigurationError(text, code=error, details={"status": status, "reauth": error == "invalid_grant"})
    return PermanentError(text, code=error, details={"status": status})


def classify(status: int, headers: Mapping[str, str], body: Any) -> IntegrationError | None:
    """None for success; otherwise the classified error (reference §1.3)."""
    if 200 <= status < 300:
        return None
    oauth = oauth_error(status, body)
    if oauth is not None:
        return oauth
    reason, domain, message = reason_of(body)
    code = reason or f"http_{status}"
    text = f"{message or f'HTTP {status}'}" + (f" ({domain}.{reason})" if reason else "")
    details: dict[str, Any] = {"status": status}
    if status == 401:
        # Refresh the access token once (the pipeline does); if Google still refuses, reconnect.
        return ConfigurationError(text, code=code, details={**details, "refresh": True, "reauth": True})
    if status == 403:
        if reason in RATE_LIMIT_REASONS:
            return TemporaryError(text, code=code, details=details)
        if reason == "quotaExceeded":
            # The general Calendar usage limits (support.google.com/a/answer/2905486) reset over hours:
            # backing off for seconds does not help, so the action fails and says why.
            return PermanentError(f"{text}: the account hit Google Calendar's usage limits; try again in a few "
                                  "hours", code=code, details={**details, "usage_limit": True})
        if reason == "forbiddenForNonOrganizer":
            return PermanentError(f"{text}: only the organizer may change shared properties", code=code,
                                  details=details)
        if reason in SCOPE_REASONS:
            return ConfigurationError(f"{text}: the connection lacks a Calendar scope", code=code,
                                      details={**details, "reauth": True})
        return ConfigurationError(f"{text}: the connected account may not use this calendar", code=code,
                                  details=details)
    if status == 404:
        # "Use exponential backoff" (it may be propagation delay): temporary for a few attempts; the
        # client turns it permanent after `google_calendar_not_found_attempts`.
        return TemporaryError(text, code="notFound", details={**details, "not_found": True})
    if status == 409:
        if reason == "conflict":  # batch items only
            return TemporaryError(text, code=code, details=details)
        return PermanentError(text, code="duplicate" if reason in (None, "duplicate") else code, details=details)
    if status == 410:
        if reason in FULL_SYNC_REASONS:
            return PermanentError(f"{text}: clear the stored events and sync again from scratch", code=code,
                                  details={**details, "full_sync": True})
        return PermanentError(text, code="deleted" if reason in (None, "deleted") else code, details=details)
    if status == 412:
        return PermanentError(f"{text}: the event changed since its etag was read; fetch it again and re-apply "
                              "the change", code="etag_mismatch", details={**details, "reason": reason})
    if status == 429 or status >= 500:
        return TemporaryError(text, code=code, details=details)
    return PermanentError(text, code=code, details=details)
