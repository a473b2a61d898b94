"""Connections registry, append-only audit log, usage ledger and notifications (sqlmodel)."""
