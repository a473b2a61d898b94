"""`python -m gateway` serves the gateway on OSI_GATEWAY_PORT."""

import uvicorn

from gateway.app import create_app
from worker.settings import get_settings

settings = get_settings()
uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port, log_level="info")
