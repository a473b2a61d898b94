"""Google Calendar's own input: incremental sync (the shared calendar models serve everything else)."""

from __future__ import annotations

from pydantic import Field

from activities.calendar.model import ConnectionRef


class SyncInput(ConnectionRef):
    """events.list with a sync token: changes since the last sync (a full sync when the token is gone)."""

    integration_type: str = "GOOGLE_CALENDAR"
    calendar_id: str | None = None
    sync_token: str | None = Field(default=None, description="nextSyncToken of the previous sync; None = full sync")
    max_pages: int = Field(default=20, ge=1, le=200)
