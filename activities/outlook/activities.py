"""The Outlook connection test (the shared calendar activities are `calendar.*`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from activities.outlook.client import OutlookCalendarClient

if TYPE_CHECKING:
    from core.pipeline import Action


async def test_connection(act: Action) -> dict[str, Any]:
    """A real call: GET /me (or /users/{mailbox}) and report the mailbox."""
    data = await OutlookCalendarClient(act).me()
    address = data.get("mail") or data.get("userPrincipalName")
    problems = [] if address else ["the mailbox has no address"]
    return {"ok": not problems, "problems": problems,
            "mailbox": {"id": data.get("id"), "mail": address, "displayName": data.get("displayName")}}
