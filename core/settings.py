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

    # Local stack
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"

    # Ports of the local stack: each defaults to OSI_PORT_BASE + its offset when OSI_PORT_BASE is set (see
    # DEFAULT_PORTS); a URL below that is not set derives from its port.
    port_base: int | None = None
    temporal_port: int = 7233
    vault_port: int = 8200

    # Temporal
    temporal_address: str = "127.0.0.1:7233"  # default: {host}:{temporal_port}
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"  # default: http://{host}:{temporal_ui_port}
    task_queue: str = "integrations"
    temporal_ui_port: int = 8233
    payload_encryption: bool = True

    # Vault / OpenBao
    vault_addr: str = "http://127.0.0.1:8200"  # default: http://{host}:{vault_port}
    vault_token: SecretStr | None = SecretStr("root")
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    vault_kv_mount: str = "secret"
    vault_kv_prefix: str = "osi/connections"
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "osi-payloads"
    vault_cache_ttl_seconds: float = 300.0

    # Store (default: SQLite in the data folder)
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

    # Prometheus metrics of the worker process (0 disables the endpoint): ours, and the Temporal SDK's own
    # (its Rust core serves them on a port of its own)
    worker_metrics_port: int = 9464
    worker_sdk_metrics_port: int = 9465

    # Gateway and sandbox
    gateway_port: int = 8080
    gateway_public_url: str = "http://127.0.0.1:8080"  # default: http://{host}:{gateway_port}
    admin_api_key: SecretStr | None = None
    sandbox_port: int = 8099
    sandbox_enabled: bool = True

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
        for name, (default, offset) in DEFAULT_PORTS.items():
            if out.get(name) in (None, ""):
                out[name] = int(base) + offset if base not in (None, "") else default
        host = out.get("host") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a bind-all address is not a URL to call
        derived = {"temporal_address": f"{host}:{out['temporal_port']}",
                   "temporal_ui_url": f"http://{host}:{out['temporal_ui_port']}",
                   "vault_addr": f"http://{host}:{out['vault_port']}",
                   "gateway_public_url": f"http://{host}:{out['gateway_port']}",
                   "database_url": f"sqlite:///{Path(out.get('data_dir') or '.data') / 'osi.db'}"}
        for name, value in derived.items():
            if out.get(name) in (None, ""):
                out[name] = value
        return out

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
