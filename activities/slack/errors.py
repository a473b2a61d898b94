"""Classify Slack answers: the body's `ok`/`error` decides (HTTP 200 carries method errors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import ErrorClass, IntegrationError

# Retry later (429 `ratelimited` arrives with Retry-After; chat.* `rate_limited` comes as HTTP 200).
TEMPORARY = frozenset({
    "ratelimited", "rate_limited", "service_unavailable", "internal_error", "request_timeout",
    "fatal_error", "team_added_to_org", "fetch_members_failed",
})
# An administrator must act: re-install, grant a scope, re-enable the app.
REAUTH = frozenset({
    "invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired",
    "invalid_refresh_token", "app_uninstalled",
})
CONFIGURATION = REAUTH | frozenset({
    "missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied", "access_denied",
    "invalid_client_id", "bad_client_secret", "invalid_code", "bad_redirect_uri", "invalid_grant_type",
    "team_access_not_granted", "org_login_required", "two_factor_setup_required", "enterprise_is_restricted",
})
# The request itself is wrong or its target is unusable: never retried.
PERMANENT = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "user_not_in_channel", "msg_too_long",
    "msg_blocks_too_long", "invalid_blocks", "invalid_blocks_format", "no_text", "too_many_attachments",
    "restricted_action", "message_limit_exceeded", "users_not_found", "user_not_found", "message_not_found",
    "cant_update_message", "edit_window_closed", "expired_trigger_id", "exchanged_trigger_id",
    "invalid_trigger_id", "view_too_large", "duplicate_external_id", "invalid_arguments", "invalid_cursor",
    "invalid_limit", "method_not_supported_for_channel_type", "too_many_members", "channel_is_limited_access",
    "invalid_json", "json_not_object", "invalid_array_arg", "invalid_charset", "invalid_form_data",
    "invalid_post_type", "missing_post_type", "thread_not_found", "cannot_reply_to_message", "is_inactive",
})

# What an operator should read next to the bare code.
HINTS: dict[str, str] = {
    "channel_not_found": "the channel does not exist, or it is private and the bot has not been invited",
    "not_in_channel": "the bot is not a member of the channel",
    "is_archived": "the channel is archived",
    "token_expired": "the access token expired (token rotation refreshes it)",
    "token_revoked": "the token was revoked (app removed or user deactivated): re-install the app",
    "invalid_auth": "the token is not valid: re-install the app",
    "account_inactive": "the workspace or bot user was deactivated: re-install the app",
    "invalid_refresh_token": "the refresh token is no longer valid: re-install the app",
    "missing_scope": "the app was installed without a scope this action needs: re-install to grant it",
    "msg_too_long": "the message text is too long",
    "invalid_blocks": "Block Kit rejected by Slack",
}


def error_class_of(code: str) -> ErrorClass:
    if code in TEMPORARY:
        return ErrorClass.TEMPORARY
    if code in CONFIGURATION:
        return ErrorClass.CONFIGURATION
    if code.startswith("restricted_action"):
        return ErrorClass.PERMANENT
    # Unknown method errors describe this request (Slack's own list is per method): do not retry.
    return ErrorClass.PERMANENT


def error_from_body(body: Mapping[str, Any], status: int = 200) -> IntegrationError:
    """The classified error of an `ok:false` answer, with Slack's own extra fields kept."""
    code = str(body.get("error") or f"http_{status}")
    details: dict[str, Any] = {}
    message = HINTS.get(code, code.replace("_", " "))
    if code == "missing_scope":
        needed, provided = body.get("needed"), body.get("provided")
        details.update({"needed": needed, "provided": provided})
        message = f"missing_scope: this call needs {needed!r}; the token has {provided!r}"
    if code in ("invalid_blocks", "invalid_blocks_format") and body.get("errors"):
        details["errors"] = list(body["errors"])[:20]
        message = f"{message}: {'; '.join(map(str, details['errors'][:3]))}"
    meta = body.get("response_metadata")
    if isinstance(meta, Mapping) and meta.get("messages"):
        details["messages"] = list(meta["messages"])[:10]
        if code == "invalid_arguments":
            message = f"invalid arguments: {'; '.join(map(str, details['messages'][:3]))}"
    if code in REAUTH:
        details["reauth"] = True
    if code == "token_expired":
        # The pipeline refreshes once and retries once; only if that fails does re-auth apply.
        details["refresh"] = True
    return IntegrationError(message, code=code, error_class=error_class_of(code), details=details)


def classify(status: int, headers: Mapping[str, str], body: Any) -> IntegrationError | None:
    """None for success (`ok: true`); otherwise the classified error. Retry-After is read by the pipeline."""
    if status == 429:
        code = str(body.get("error")) if isinstance(body, Mapping) and body.get("error") else "ratelimited"
        return IntegrationError("rate limited by Slack", code=code, error_class=ErrorClass.TEMPORARY)
    if status >= 500:
        code = str(body.get("error")) if isinstance(body, Mapping) and body.get("error") else f"http_{status}"
        return IntegrationError(f"Slack answered HTTP {status}", code=code, error_class=ErrorClass.TEMPORARY)
    if isinstance(body, Mapping) and "ok" in body:
        if body.get("ok") is True and status == 200:
            return None
        if body.get("ok") is False:
            return error_from_body(body, status)
    if status == 200:
        return IntegrationError("Slack answered without an `ok` field", code="malformed_response",
                                error_class=ErrorClass.TEMPORARY)
    cls = ErrorClass.CONFIGURATION if status in (401, 403) else ErrorClass.PERMANENT
    return IntegrationError(f"unexpected HTTP {status} from Slack", code=f"http_{status}", error_class=cls)
