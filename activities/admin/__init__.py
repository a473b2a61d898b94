"""Maintenance shared by every provider: connection health sweeps, credential expiry warnings, alert delivery."""
