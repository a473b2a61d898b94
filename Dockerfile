# syntax=docker/dockerfile:1
# OpenSyte Integrations: one image for the worker (default command), the gateway (`python -m gateway`),
# the migrations job (`osi db upgrade`) and the Vault init job (`python -m vault.bootstrap`).
#
# Base image pinned by exact tag and by the digest of its multi-arch index (docs/deploy.md "Upgrades"
# says how to move both together).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- builder: the hashed lock into a venv, then our package, then bytecode ----------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes. --require-hashes: every file
# pip downloads must match a hash in the lock (pip and setuptools included).
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY activities activities
COPY core core
COPY workflows workflows
COPY worker worker
COPY vault vault
COPY gateway gateway
COPY store store
COPY sandbox sandbox
# --no-deps: everything it needs is installed from the lock above; --no-build-isolation: build with the
# locked setuptools instead of fetching an unpinned one.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check
# The runtime user cannot write site-packages, so every module (workflow modules included: the Temporal
# sandbox imports them for each workflow run) must already have its .pyc. unchecked-hash: the .pyc is used
# as is, whatever the file timestamps became while copying between stages; -f rewrites the timestamp-based
# .pyc files pip wrote at install time.
RUN /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---- runtime: slim, non-root, read-only code ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# The official image ships the standard library without .pyc files; compile them once here for the same
# reason as above (faster starts, no writes attempted at run time).
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash /usr/local/lib/python3.11 \
 && groupadd --system --gid 10001 osi \
 && useradd --system --uid 10001 --gid osi --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin osi \
 && mkdir -p /var/lib/osi/approle/osi-worker /var/lib/osi/approle/osi-gateway /var/lib/osi/vault-keys /app/.data \
 && chown -R osi:osi /var/lib/osi /app/.data \
 && chmod -R 700 /var/lib/osi
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Policies for `python -m vault.bootstrap`, the entrypoint (*_FILE secrets) and the healthcheck.
COPY deploy/vault deploy/vault
COPY deploy/healthcheck.py deploy/healthcheck.py
# (executable in git; plain COPY keeps the mode, and works with the legacy builder too)
COPY deploy/docker-entrypoint.sh /usr/local/bin/osi-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OSI_HOST=0.0.0.0 \
    OSI_SANDBOX_ENABLED=false \
    OSI_LOG_FORMAT=json \
    OSI_WORKER_HEALTH_PORT=8081
USER 10001:10001
# gateway 8080, worker readiness 8081 (OSI_WORKER_HEALTH_PORT), worker metrics 9464
EXPOSE 8080 8081 9464
# Readiness of whichever process runs (deploy/healthcheck.py): OSI_HEALTHCHECK_URL, else the gateway's /readyz
# when PID 1 is the gateway, else the worker's /readyz on OSI_WORKER_HEALTH_PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["osi-entrypoint"]
CMD ["python", "-m", "worker"]
