"""The error taxonomy: temporary, permanent and configuration failures as ApplicationError types."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio.exceptions import ApplicationError


class ErrorClass(StrEnum):
    """How a failure should be handled; the value is the ApplicationError `type`."""

    TEMPORARY = "TemporaryError"
    PERMANENT = "PermanentError"
    CONFIGURATION = "ConfigurationError"


# The stable set of error types we raise; a test pins it.
ERROR_TYPES: frozenset[str] = frozenset(c.value for c in ErrorClass)
NON_RETRYABLE_TYPES: tuple[str, ...] = (ErrorClass.PERMANENT.value, ErrorClass.CONFIGURATION.value)


class IntegrationError(Exception):
    """A classified failure raised inside activities before conversion to ApplicationError."""

    error_class: ErrorClass = ErrorClass.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
        error_class: ErrorClass | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.provider = provider
        self.retry_after = retry_after
        self.details = details or {}
        if error_class is not None:
            self.error_class = error_class

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON details carried by the ApplicationError (never a secret)."""
        return {
            "error_class": self.error_class.value,
            "code": self.code,
            "provider": self.provider,
            "message": self.message,
            "retry_after": self.retry_after,
            **({"details": self.details} if self.details else {}),
        }

    def to_application_error(self, next_retry_delay: timedelta | None = None, *,
                             final: bool = False) -> ApplicationError:
        """Convert to the Temporal error whose `type` drives the retry policy; `final` ends a temporary error's
        retries (its deadline has passed) while keeping its type and last cause."""
        retryable = self.error_class is ErrorClass.TEMPORARY and not final
        return ApplicationError(
            f"{self.provider + ': ' if self.provider else ''}{self.message}"
            + (f" (code {self.code})" if self.code is not None else ""),
            self.to_dict(),
            type=self.error_class.value,
            non_retryable=not retryable,
            next_retry_delay=next_retry_delay if retryable else None,
        )


class TemporaryError(IntegrationError):
    """Retry later: 5xx, timeouts, rate limits, open circuit."""

    error_class = ErrorClass.TEMPORARY


class PermanentError(IntegrationError):
    """Do not retry: the request itself is wrong (bad input, recipient invalid, window closed)."""

    error_class = ErrorClass.PERMANENT


class ConfigurationError(IntegrationError):
    """Do not retry: an administrator must act (token revoked, missing scope, template not approved)."""

    error_class = ErrorClass.CONFIGURATION


def error_from_details(err: BaseException) -> dict[str, Any] | None:
    """The classified details of a failed activity as seen from a workflow (cause chain walked)."""
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, ApplicationError) and cur.type in ERROR_TYPES:
            if cur.details and isinstance(cur.details[0], dict):
                return dict(cur.details[0])
            return {"error_class": cur.type, "message": cur.message}
        cur = cur.__cause__
    return None
