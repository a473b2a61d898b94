"""Imports every table module so `SQLModel.metadata` is complete before create_all."""

import store.alerts
import store.calendar
import store.slack
import store.whatsapp  # noqa: F401
from store import models  # noqa: F401
