"""Settings shared by every calendar provider (`OSI_CALENDAR_…`): DST gaps, connect-link state lifetime."""

from __future__ import annotations

from typing import ClassVar, Literal

from core.settings import ProviderSettings, section_config


class CalendarSettings(ProviderSettings):
    model_config = section_config("OSI_CALENDAR_")
    section_name: ClassVar[str] = "calendar"

    # A wall-clock time inside a DST gap (02:30 on a spring-forward day): "reject" (PermanentError) or
    # "shift" forward by the gap's length. Ambiguous times always mean their first occurrence.
    dst_gap_policy: Literal["reject", "shift"] = "reject"
    # OAuth connect flows (gateway): how long an authorization link's state stays valid.
    oauth_state_ttl_seconds: float = 600.0
