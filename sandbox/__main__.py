"""`python -m sandbox` serves the provider fakes on OSI_SANDBOX_PORT (bound to OSI_HOST)."""

import uvicorn
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.app import create_app
from sandbox.state import NetworkConfig, SandboxState


class SandboxSettings(BaseSettings):
    """The two settings the sandbox needs, read like the service reads its own (OSI_ env, .env file);
    the sandbox plays the providers, so it does not import the product's settings."""

    model_config = SettingsConfigDict(env_prefix="OSI_", env_file=".env", extra="ignore")
    host: str = "127.0.0.1"
    sandbox_port: int = 8099
    # The network every provider is behind (lognormal jitter with this median), so a client pacing too close
    # to a limit meets the rejections real arrival jitter causes. 0 = none (the default).
    sandbox_latency_ms: float = 0.0
    sandbox_jitter_ms: float = 0.0


settings = SandboxSettings()
state = SandboxState()
state.network = NetworkConfig(latency_ms=settings.sandbox_latency_ms, jitter_ms=settings.sandbox_jitter_ms,
                              jitter_dist="lognormal")
uvicorn.run(create_app(state), host=settings.host, port=settings.sandbox_port, log_level="warning")
