"""Slack's settings section (`OSI_SLACK_…`): Web API and OAuth URLs, install scopes, caches."""

from __future__ import annotations

from typing import Any, ClassVar

from core.settings import ApiSettings, section_config


class SlackSettings(ApiSettings):
    model_config = section_config("OSI_SLACK_")
    section_name: ClassVar[str] = "slack"

    base_url: str = "https://slack.com/api/"
    authorize_url: str = "https://slack.com/oauth/v2/authorize"
    # Bot scopes requested at install (comma-separated), and how long an install link's state lives.
    scopes: str = ("chat:write,chat:write.customize,channels:read,groups:read,im:read,"
                   "mpim:read,channels:join,users:read,users:read.email,commands,channels:history,groups:history")
    state_ttl_seconds: float = 600.0
    # Channel facts (exists, archived, bot membership) cached per connection to spare Tier 3 calls.
    channel_cache_seconds: float = 60.0
    # Auto-join public channels before posting unless a connection's settings say otherwise.
    auto_join_default: bool = True

    @classmethod
    def sandbox_overrides(cls, sandbox_url: str) -> dict[str, Any]:
        return {"base_url": f"{sandbox_url}/slack/api/", "authorize_url": f"{sandbox_url}/slack/oauth/v2/authorize"}
