"""`python -m sandbox` serves the provider fakes on OSI_SANDBOX_PORT."""

import uvicorn

from core.settings import get_settings
from sandbox.app import create_app

settings = get_settings()
uvicorn.run(create_app(), host=settings.host, port=settings.sandbox_port, log_level="warning")
