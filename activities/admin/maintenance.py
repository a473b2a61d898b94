"""Maintenance activities: connection health sweeps and credential expiry warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field
from temporalio import activity

from core.connections import test_connection
from core.contract import ContractModel, WorkflowInput
from vault.client import CredentialsMissing
from vault.credentials import OAuth2Credentials

if TYPE_CHECKING:
    from core.runtime import Runtime


class SweepInput(WorkflowInput):
    """Which connections to check; all organizations when `organization_id` is None."""

    organization_id: str | None = None
    expiry_warning_days: int = Field(default=7, ge=1, le=90)
    run_connection_tests: bool = True


class ConnectionRef(ContractModel):
    organization_id: str
    integration_type: str
    name: str
    connection_id: str


class CheckInput(ContractModel):
    connection: ConnectionRef
    expiry_warning_days: int = 7
    run_connection_test: bool = True


class CheckResult(ContractModel):
    connection: ConnectionRef
    healthy: bool
    expiring: bool = False
    detail: dict[str, Any] = Field(default_factory=dict)


class SweepResult(ContractModel):
    checked: int
    unhealthy: list[CheckResult] = Field(default_factory=list)
    expiring: list[CheckResult] = Field(default_factory=list)


class MaintenanceActivities:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @activity.defn(name="admin.list_connections")
    async def list_connections(self, inp: SweepInput) -> list[ConnectionRef]:
        conns = await self.rt.store.run(self.rt.store.list_connections, inp.organization_id)
        return [ConnectionRef(organization_id=c.organization_id, integration_type=c.integration_type,
                              name=c.name, connection_id=c.id) for c in conns if c.status != "disabled"]

    @activity.defn(name="admin.check_connection")
    async def check_connection(self, inp: CheckInput) -> CheckResult:
        """Test the connection for real and warn administrators of credentials about to expire."""
        ref = inp.connection
        conn = await self.rt.store.run(self.rt.store.get_connection, ref.connection_id)
        if conn is None:
            return CheckResult(connection=ref, healthy=False, detail={"error": "connection removed"})
        expiring = False
        exp = conn.credentials_expire_at
        if exp is not None:
            # Refreshable OAuth tokens renew themselves; only credentials nobody can renew need a human.
            if not await self._refreshable(conn) and exp - datetime.now(UTC) < timedelta(days=inp.expiry_warning_days):
                expiring = True
                await self.rt.notify_admins(
                    ref.organization_id, "credentials_expiring",
                    f"{ref.integration_type} connection {ref.name!r}: credentials expire {exp.isoformat()}; "
                    "rotate them with `osi connections rotate`", connection_id=ref.connection_id,
                    severity="warning",
                )
        result: dict[str, Any] = {}
        if inp.run_connection_test:
            result = await test_connection(self.rt, ref.organization_id, ref.integration_type, ref.name,
                                           actor="maintenance")
        return CheckResult(connection=ref, healthy=bool(result.get("ok", True)), expiring=expiring, detail=result)

    async def _refreshable(self, conn: Any) -> bool:
        try:
            creds = await self.rt.vault.read(self.rt.credentials_path(conn))
        except CredentialsMissing:
            return False
        return isinstance(creds, OAuth2Credentials) and creds.refresh_token is not None

    def all(self) -> list[Any]:
        return [self.list_connections, self.check_connection]
