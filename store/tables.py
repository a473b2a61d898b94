"""Imports every table module so `SQLModel.metadata` is complete before create_all."""

from store import models  # noqa: F401
