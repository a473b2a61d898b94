"""Container healthcheck: GET a readiness URL, exit 0 on 2xx (slim images have no curl)."""

from __future__ import annotations

import os
import sys
import urllib.request


def url_from_env() -> str:
    """The URL given, else the worker's readiness endpoint when it has one, else the gateway's."""
    if os.environ.get("OSI_HEALTHCHECK_URL"):
        return os.environ["OSI_HEALTHCHECK_URL"]
    if os.environ.get("OSI_WORKER_HEALTH_PORT"):
        return f"http://127.0.0.1:{os.environ['OSI_WORKER_HEALTH_PORT']}/readyz"
    return f"http://127.0.0.1:{os.environ.get('OSI_GATEWAY_PORT', '8080')}/readyz"


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
