"""Faithful local fakes of the providers (a product feature: run everything without accounts)."""
