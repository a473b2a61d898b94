"""Typed credentials; every secret field is a SecretStr so it never prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Creds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def secret_values(self) -> list[str]:
        """Every secret string held (used by redaction and the canary test)."""
        out: list[str] = []
        for value in self.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out

    def to_vault(self) -> dict[str, Any]:
        """The plain dict written to Vault KV (the only place secrets are revealed)."""
        data: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, SecretStr):
                data[key] = value.get_secret_value()
            elif isinstance(value, datetime):
                data[key] = value.isoformat()
            else:
                data[key] = value
        return data


class OAuth2Credentials(_Creds):
    """Access token + optional refresh token (Slack with rotation, Google, Microsoft)."""

    kind: Literal["oauth2"] = "oauth2"
    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    scopes: list[str] = Field(default_factory=list)
    token_type: str = "Bearer"
    # Non-secret identity returned by the provider (team id, bot user id, tenant, account).
    account: dict[str, str] = Field(default_factory=dict)

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        now = now or datetime.now(UTC)
        exp = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
        return exp - now <= timedelta(seconds=seconds)


class ApiKeyCredentials(_Creds):
    kind: Literal["api_key"] = "api_key"
    api_key: SecretStr


class BearerTokenCredentials(_Creds):
    """A long-lived bearer token (WhatsApp system-user token) with the app's webhook secrets."""

    kind: Literal["bearer"] = "bearer"
    token: SecretStr
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    expires_at: datetime | None = None


class ServiceAccountCredentials(_Creds):
    """A Google service account key (JSON) used with domain-wide delegation."""

    kind: Literal["service_account"] = "service_account"
    service_account_json: SecretStr
    subject: str | None = None


class ClientCredentials(_Creds):
    """App-only client credentials (Microsoft Graph application permissions)."""

    kind: Literal["client_credentials"] = "client_credentials"
    client_id: str
    client_secret: SecretStr
    tenant: str


Credentials = Annotated[
    OAuth2Credentials
    | ApiKeyCredentials
    | BearerTokenCredentials
    | ServiceAccountCredentials
    | ClientCredentials,
    Field(discriminator="kind"),
]


class AppSecrets(_Creds):
    """Provider application secrets shared by all connections (OAuth client, signing secret)."""

    kind: Literal["app"] = "app"
    client_id: str = ""
    client_secret: SecretStr | None = None
    signing_secret: SecretStr | None = None
    extra: dict[str, str] = Field(default_factory=dict)
