"""Container healthcheck: GET a readiness URL, exit 0 on 2xx (slim images have no curl)."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def main_command(cmdline: Path = Path("/proc/1/cmdline")) -> list[str]:
    """The container's main process (the entrypoint execs the command, so it is PID 1)."""
    try:
        return [a for a in cmdline.read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def is_gateway(command: list[str]) -> bool:
    return "gateway" in command[1:3]  # python -m gateway, osi gateway


def url_from_env(command: list[str] | None = None) -> str:
    """OSI_HEALTHCHECK_URL when given; else the gateway's /readyz when the container runs the gateway; else the
    worker's /readyz on OSI_WORKER_HEALTH_PORT (the image sets 8081) when set; else the gateway's."""
    if os.environ.get("OSI_HEALTHCHECK_URL"):
        return os.environ["OSI_HEALTHCHECK_URL"]
    gateway = f"http://127.0.0.1:{os.environ.get('OSI_GATEWAY_PORT', '8080')}/readyz"
    if is_gateway(main_command() if command is None else command):
        return gateway
    port = os.environ.get("OSI_WORKER_HEALTH_PORT", "")
    if port and port != "0":
        return f"http://127.0.0.1:{port}/readyz"
    return gateway


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else url_from_env()
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 - a fixed local http URL
            return 0 if 200 <= resp.status < 300 else 1
    except Exception as exc:  # 503 (not ready) raises HTTPError too
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
