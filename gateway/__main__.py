"""`python -m gateway` serves the gateway on OSI_GATEWAY_PORT."""

import uvicorn

from core.logs import configure_logging
from core.settings import get_settings
from gateway.app import create_app

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
# log_config=None: uvicorn's loggers go through the same handler and format as ours.
uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port, log_config=None)
