"""The Graph API's error envelope, as the WhatsApp Cloud API answers it (shared by the WhatsApp fakes)."""

from __future__ import annotations

import base64
import os
from typing import Any

from fastapi.responses import JSONResponse


def graph_error(
    status: int, code: int, message: str, *, etype: str = "OAuthException", details: str | None = None,
    subcode: int | None = None, transient: bool | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The Graph API error envelope (message, type, code, error_data, fbtrace_id)."""
    err: dict[str, Any] = {"message": message, "type": etype, "code": code,
                           "fbtrace_id": base64.b64encode(os.urandom(12)).decode()}
    if details is not None:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        err["error_subcode"] = subcode
    if transient is not None:
        err["is_transient"] = transient
    return JSONResponse({"error": err}, status_code=status, headers=headers)


def param_invalid(details: str) -> JSONResponse:
    """Meta's 131009 for a value outside the documented limits."""
    return graph_error(400, 131009, "(#131009) Parameter value is not valid", details=details)


def param_missing(details: str) -> JSONResponse:
    return graph_error(400, 131008, "(#131008) Required parameter is missing", details=details)
