"""`python -m sandbox` serves the provider fakes on OSI_SANDBOX_PORT (bound to OSI_HOST)."""

import uvicorn
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.app import create_app


class SandboxSettings(BaseSettings):
    """The two settings the sandbox needs, read like the service reads its own (OSI_ env, .env file);
    the sandbox plays the providers, so it does not import the product's settings."""

    model_config = SettingsConfigDict(env_prefix="OSI_", env_file=".env", extra="ignore")
    host: str = "127.0.0.1"
    sandbox_port: int = 8099


settings = SandboxSettings()
uvicorn.run(create_app(), host=settings.host, port=settings.sandbox_port, log_level="warning")
