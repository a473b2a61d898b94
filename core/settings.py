"""Process settings read from OSI_* environment variables (documented in README)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

# `make run` writes the settings of the stack it started here (under the data folder), so that `osi`, run from
# any shell afterwards, targets that stack: its sandbox, store, Vault and Temporal. Environment variables win.
STACK_FILE_NAME = "stack.env"
# Where this source checkout keeps `make run`'s data (an editable install; absent in a wheel install).
_CHECKOUT_DATA = Path(__file__).resolve().parents[1] / ".data"


def stack_file() -> Path | None:
    """The stack settings file to read: `OSI_STACK_FILE` (empty: none), else `$OSI_DATA_DIR/stack.env`, else
    `./.data/stack.env`, else the source checkout's `.data/stack.env`."""
    explicit = os.environ.get("OSI_STACK_FILE")
    if explicit is not None:
        return Path(explicit) if explicit else None
    data_dir = os.environ.get("OSI_DATA_DIR")
    if data_dir:
        return Path(data_dir) / STACK_FILE_NAME
    for candidate in (Path(".data") / STACK_FILE_NAME, _CHECKOUT_DATA / STACK_FILE_NAME):
        if candidate.is_file():
            return candidate
    return None


class _StackFileSettings(BaseSettings):
    """Adds the stack file (`make run`'s settings) below the environment and above `.env`."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = stack_file()
        stack = (DotEnvSettingsSource(settings_cls, env_file=path),) if path is not None and path.is_file() else ()
        return (init_settings, env_settings, *stack, dotenv_settings, file_secret_settings)


class ProviderSettings(_StackFileSettings):
    """A provider's own settings section: its fields read from `OSI_<SECTION>_…` variables.

    Subclasses set `section_name` and `model_config = section_config("OSI_<SECTION>_")`.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    section_name: ClassVar[str] = ""

    @classmethod
    def sandbox_overrides(cls, sandbox_url: str) -> dict[str, Any]:
        """The fields that point this provider at the local sandbox (`make run`, tests, benchmarks)."""
        return {}

    @classmethod
    def sandbox_env(cls, sandbox_url: str) -> dict[str, str]:
        """`sandbox_overrides` as this section's environment variables (for child processes)."""
        prefix = str(cls.model_config.get("env_prefix") or "")
        return {f"{prefix}{k.upper()}": str(v) for k, v in cls.sandbox_overrides(sandbox_url).items()}


class ApiSettings(ProviderSettings):
    """The section of a provider with an HTTP API: where it lives (per-connection `base_url` settings win)."""

    base_url: str


def section_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True)


# Default ports of the local stack, and their offsets from `OSI_PORT_BASE` (one setting moves them all).
# OpenBao also listens on its port + 1 (cluster traffic), hence the gap after it.
DEFAULT_PORTS: dict[str, tuple[int, int]] = {
    "temporal_port": (7233, 0), "temporal_ui_port": (8233, 1), "gateway_port": (8080, 2), "sandbox_port": (8099, 3),
    "worker_metrics_port": (9464, 4), "worker_sdk_metrics_port": (9465, 5), "vault_port": (8200, 6),
}


class Settings(_StackFileSettings):
    """Every knob of the service; defaults are the embedded local stack."""

    model_config = SettingsConfigDict(env_prefix="OSI_", env_file=".env", extra="ignore", populate_by_name=True)

    # Development mode (`make run`, the tests): the only place dev defaults exist (Vault root token, no admin key,
    # an open codec, plain-http alert webhooks). Outside it every process refuses to start without real credentials.
    dev_mode: bool = False

    # Local stack
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"

    # Ports of the local stack: each defaults to OSI_PORT_BASE + its offset when OSI_PORT_BASE is set (see
    # DEFAULT_PORTS); a URL below that is not set derives from its port.
    port_base: int | None = None
    temporal_port: int = 7233
    vault_port: int = 8200

    # Temporal: the client configuration comes from temporalio.envconfig (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
    # TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE); these two, when set, win
    # over it (core/temporal.py, docs/deploy.md "Temporal"). Unset everywhere: 127.0.0.1:7233, "default".
    # OSI_PORT_BASE or OSI_TEMPORAL_PORT set the address to {host}:{temporal_port} (the local stack).
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    temporal_ui_url: str = "http://127.0.0.1:8233"  # default: http://{host}:{temporal_ui_port}
    task_queue: str = "integrations"
    temporal_ui_port: int = 8233
    payload_encryption: bool = True

    # Vault / OpenBao
    vault_addr: str = "http://127.0.0.1:8200"  # default: http://{host}:{vault_port}
    vault_token: SecretStr | None = None  # dev mode only: defaults to the dev server's "root"
    # Vault/OpenBao Agent token file (re-read when it changes; wins over AppRole and the token).
    vault_token_file: Path | None = None
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    # AppRole secret id as a file (re-read at each login, so a rotated id needs no restart).
    vault_secret_id_file: Path | None = None
    vault_kv_mount: str = "secret"
    vault_kv_prefix: str = "osi/connections"
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "osi-payloads"
    vault_cache_ttl_seconds: float = 300.0
    # While Vault is unreachable, a cached secret is served this much longer past its TTL (logged).
    vault_stale_ttl_seconds: float = 3600.0
    # One Vault request may take this long before it fails (and the cached secret is served instead).
    vault_timeout_seconds: float = 5.0

    # Store (default: SQLite in the data folder)
    database_url: str = "sqlite:///.data/osi.db"
    # Threads for blocking store queries (their own pool: a slow query or a hanging Vault stalls nothing else).
    store_threads: int = Field(default=16, ge=1)
    # Worker and gateway apply migrations at start; off where the application's role cannot run DDL
    # (compose: the `migrate` job runs `osi db upgrade` as the schema owner).
    migrate_on_start: bool = True

    # Limiter / breaker state: "memory" (in-process) or a redis:// URL
    limiter_backend: str = "memory"
    limiter_key_prefix: str = "osi:rl:"  # Redis keys; distinct per deployment sharing one Redis database
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0

    # HTTP
    http_timeout_seconds: float = 20.0
    http_max_connections: int = 200
    http_pool_shards: int = 4  # pools used in turn; see activities/http.py

    # Logging: level (DEBUG logs every provider call) and format ("text" or "json", one object per line)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Prometheus metrics of the worker process (0 disables the endpoint): ours, and the Temporal SDK's own
    # (its Rust core serves them on a port of its own)
    worker_metrics_port: int = 9464
    worker_sdk_metrics_port: int = 9465
    # Worker /readyz (polling its task queue, Vault and store reachable) and /healthz (0 disables them)
    worker_health_port: int = 0
    # Worker Versioning: with both set the worker joins the Worker Deployment `worker_deployment_name` as
    # build `worker_build_id`, and workflows it starts are pinned to that build or auto-upgrade to the
    # current one (docs/deploy.md "Upgrades").
    worker_deployment_name: str | None = None
    worker_build_id: str | None = None
    worker_versioning_behavior: Literal["pinned", "auto_upgrade"] = "pinned"

    # Gateway and sandbox
    gateway_port: int = 8080
    gateway_public_url: str = "http://127.0.0.1:8080"  # default: http://{host}:{gateway_port}
    admin_api_key: SecretStr | None = None
    sandbox_port: int = 8099
    sandbox_enabled: bool = True

    # Inbound limits (gateway): bodies over the route's cap get 413 before they are read; see gateway/limits.py
    max_body_bytes: int = 64 * 1024  # admin API and anything without its own cap
    codec_max_body_bytes: int = 8 * 1024 * 1024  # Temporal caps a payload at 2 MB; base64 and batches on top
    max_header_count: int = 100
    max_header_bytes: int = 16 * 1024
    max_json_depth: int = 64

    # Outbound requests to user-supplied URLs (alert webhooks, media sources): core/egress.py
    egress_timeout_seconds: float = 10.0
    egress_max_response_bytes: int = 1024 * 1024  # alert webhook answers; media sources use Meta's own limits
    egress_max_redirects: int = 3

    # Non-public hosts that user-supplied URLs (media sources) may reach anyway (comma-separated; the sandbox).
    egress_private_hosts: str = Field(default="", validation_alias=AliasChoices(
        "OSI_EGRESS_PRIVATE_HOSTS", "OSI_MEDIA_FETCH_PRIVATE_HOSTS"))

    # Provider settings sections given in code (tests): {section name: {field: value}}; environment
    # variables with each section's own prefix (OSI_WHATSAPP_…, OSI_SLACK_…) fill in the rest.
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _section_cache: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        """Ports from OSI_PORT_BASE, URLs from their ports, the store under the data folder: what is not given
        follows what is, so moving one port never leaves a URL pointing at the old one."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        base = out.get("port_base")
        # Without them Temporal's own configuration (envconfig) decides the address: see temporal_address.
        local_temporal = base not in (None, "") or out.get("temporal_port") not in (None, "")
        for name, (default, offset) in DEFAULT_PORTS.items():
            if out.get(name) in (None, ""):
                out[name] = int(base) + offset if base not in (None, "") else default
        host = out.get("host") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a bind-all address is not a URL to call
        derived = {"temporal_address": f"{host}:{out['temporal_port']}" if local_temporal else None,
                   "temporal_ui_url": f"http://{host}:{out['temporal_ui_port']}",
                   "vault_addr": f"http://{host}:{out['vault_port']}",
                   "gateway_public_url": f"http://{host}:{out['gateway_port']}",
                   "database_url": f"sqlite:///{Path(out.get('data_dir') or '.data') / 'osi.db'}"}
        for name, value in derived.items():
            if out.get(name) in (None, "") and value is not None:
                out[name] = value
        return out

    @model_validator(mode="after")
    def _dev_defaults(self) -> Settings:
        if self.dev_mode and not (self.vault_token or self.vault_token_file or self.vault_role_id):
            self.vault_token = SecretStr("root")  # the dev server's root token, nowhere else
        return self

    def missing_for(self, process: Literal["worker", "gateway", "cli"]) -> list[str]:
        """The settings a process needs outside development mode and lacks (empty in dev mode)."""
        if self.dev_mode:
            return []
        missing = []
        approle = self.vault_role_id and (self.vault_secret_id or self.vault_secret_id_file)
        if not (self.vault_token or self.vault_token_file or approle):
            missing.append("OSI_VAULT_TOKEN or OSI_VAULT_TOKEN_FILE or OSI_VAULT_ROLE_ID+OSI_VAULT_SECRET_ID")
        if process == "gateway" and self.admin_api_key is None:
            missing.append("OSI_ADMIN_API_KEY")
        return missing

    def require(self, process: Literal["worker", "gateway", "cli"]) -> None:
        """Refuse to start (one line naming every missing setting) outside development mode."""
        missing = self.missing_for(process)
        if missing:
            raise SystemExit(f"osi {process}: refusing to start outside development mode (OSI_DEV_MODE): "
                             f"missing {'; '.join(missing)}")

    def namespace(self) -> str:
        """The Temporal namespace this process uses: OSI_TEMPORAL_NAMESPACE, else TEMPORAL_NAMESPACE (envconfig),
        else "default" (a temporal.toml profile's namespace reaches the client only: core/temporal.py)."""
        return self.temporal_namespace or os.environ.get("TEMPORAL_NAMESPACE") or "default"

    def section(self, cls: type[S]) -> S:
        """A provider's settings section, built once per Settings object."""
        found = self._section_cache.get(cls.section_name)
        if found is None:
            found = cls(**self.sections.get(cls.section_name, {}))
            self._section_cache[cls.section_name] = found
        assert isinstance(found, cls)
        return found


S = TypeVar("S", bound=ProviderSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own Settings)."""
    return Settings()
