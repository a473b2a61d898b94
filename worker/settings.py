"""Process settings read from OSI_* environment variables (documented in README)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; defaults are the embedded local stack."""

    model_config = SettingsConfigDict(env_prefix="OSI_", env_file=".env", extra="ignore")

    # Local stack
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "integrations"
    temporal_ui_port: int = 8233
    payload_encryption: bool = True

    # Vault / OpenBao
    vault_addr: str = "http://127.0.0.1:8200"
    vault_token: SecretStr | None = SecretStr("root")
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    vault_kv_mount: str = "secret"
    vault_kv_prefix: str = "osi/connections"
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "osi-payloads"
    vault_cache_ttl_seconds: float = 300.0

    # Store
    database_url: str = "sqlite:///.data/osi.db"

    # Limiter / breaker state: "memory" (in-process) or a redis:// URL
    limiter_backend: str = "memory"
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0

    # HTTP
    http_timeout_seconds: float = 20.0
    http_max_connections: int = 200
    http_pool_shards: int = 4  # pools used in turn; see activities/http.py

    # Logging: level (DEBUG logs every provider call) and format ("text" or "json", one object per line)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Prometheus metrics of the worker process (0 disables the endpoint)
    worker_metrics_port: int = 9464

    # Gateway and sandbox
    gateway_port: int = 8080
    gateway_public_url: str = "http://127.0.0.1:8080"
    admin_api_key: SecretStr | None = None
    sandbox_port: int = 8099
    sandbox_enabled: bool = True

    # Provider base URLs (production defaults; the sandbox overrides them locally)
    whatsapp_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v23.0"
    slack_base_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    google_calendar_base_url: str = "https://www.googleapis.com/calendar/v3/"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    google_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    google_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    graph_base_url: str = "https://graph.microsoft.com/v1.0/"
    entra_authority_host: str = "https://login.microsoftonline.com"

    # ---- WhatsApp (issue 3) ----
    # Hosts that media uploads may fetch from although they are not public (comma-separated; the sandbox).
    media_fetch_private_hosts: str = ""
    conversation_idle_hours: float = 72.0
    conversation_history_limit: int = Field(default=2000, ge=100)

    # ---- Slack (issue 4) ----
    # Bot scopes requested at install (comma-separated), and how long an install link's state lives.
    slack_scopes: str = ("chat:write,chat:write.customize,channels:read,groups:read,im:read,"
                         "mpim:read,channels:join,users:read,users:read.email,commands")
    slack_state_ttl_seconds: float = 600.0
    # Channel facts (exists, archived, bot membership) cached per connection to spare Tier 3 calls.
    slack_channel_cache_seconds: float = 60.0
    # Auto-join public channels before posting unless a connection's settings say otherwise.
    slack_auto_join_default: bool = True

    # ---- Calendars (issue 5) ----
    # A wall-clock time inside a DST gap (02:30 on a spring-forward day): "reject" (PermanentError) or
    # "shift" forward by the gap's length. Ambiguous times always mean their first occurrence.
    calendar_dst_gap_policy: Literal["reject", "shift"] = "reject"
    # Google Calendar quotas (per minute, sliding): 600 per user per project; the project limit is per
    # Cloud project and can be raised in the console, so it is configurable.
    google_calendar_user_quota_per_minute: int = Field(default=600, ge=1)
    google_calendar_project_quota_per_minute: int = Field(default=10_000, ge=1)
    # Google answers 404 during propagation delays ("use exponential backoff"): attempts before it is final.
    google_calendar_not_found_attempts: int = Field(default=3, ge=1)
    google_calendar_scopes: str = ("https://www.googleapis.com/auth/calendar.events,"
                                   "https://www.googleapis.com/auth/calendar.readonly")
    # Graph (Outlook) limits per app and mailbox: 10,000 requests per 10 minutes, 4 concurrent.
    outlook_mailbox_requests_per_10_minutes: int = Field(default=10_000, ge=1)
    outlook_mailbox_concurrency: int = Field(default=4, ge=1)
    outlook_scopes: str = "Calendars.ReadWrite,User.Read"
    # MSAL only accepts an https authority. Locally the Entra fake is served over http, so MSAL's own
    # HTTP client is replaced by one that sends requests for `entra_authority_host` to this base URL
    # instead (e.g. http://127.0.0.1:8099/entra). Unset in production.
    entra_http_route: str | None = None
    # OAuth connect flows (gateway): how long an authorization link's state stays valid.
    calendar_oauth_state_ttl_seconds: float = 600.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own Settings)."""
    return Settings()
