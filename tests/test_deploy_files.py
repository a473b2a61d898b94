"""docker-compose.yml is valid Compose and production-shaped; the Dockerfile and its helper scripts do what they say."""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Vendored from compose-spec/compose-go, schema/compose-spec.json (the schema `docker compose` validates with).
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
# name:tag where the tag is an exact version (x.y.z plus an optional suffix), optionally @digest.
EXACT_IMAGE = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+\.\d+[A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?$")
# PostgreSQL's own versions have two parts since 10 (16.10 is a release; 16 floats).
EXACT_POSTGRES = re.compile(r"^postgres:\d+\.\d+(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


def exact(image: str) -> bool:
    return bool(EXACT_IMAGE.match(image) or EXACT_POSTGRES.match(image))


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def jobs(svcs: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, s in svcs.items() if s.get("restart") == "no"}


def env(svc: dict[str, Any]) -> dict[str, str]:
    e = svc.get("environment") or {}
    assert isinstance(e, dict), "environment as a mapping, so tests and readers see one value per name"
    return {k: str(v) for k, v in e.items()}


def default_of(value: str) -> str:
    """`${VAR:-default}` -> default (what the file means when the operator sets nothing)."""
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return m.group(1) if m else value


def validate(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# ---- the Compose file ---------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert validate(compose()) == []


def test_the_schema_check_is_not_vacuous() -> None:
    bad = copy.deepcopy(compose())
    bad["services"]["gateway"]["restart_policy"] = "always"  # not a Compose key
    bad["services"]["worker-1"]["depends_on"]["vault"]["condition"] = "service_ready"
    errors = validate(bad)
    assert any("restart_policy" in e for e in errors) and any("service_ready" in e for e in errors)


def test_no_top_level_name_and_no_obsolete_version() -> None:
    doc = compose()
    assert "name" not in doc  # Compose v1 refuses it
    assert "version" not in doc


def test_every_image_is_pinned_to_an_exact_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in services().items():
        image = svc.get("image", "")
        assert exact(image), f"{name}: {image!r} is not pinned to an exact version"
        assert "latest" not in image, name
        if "build" in svc:  # our own image carries the package's version
            assert image == f"opensyte-integrations:{version}", name
    assert not any("auto-setup" in s["image"] for s in services().values())  # a development image
    for floating in ("postgres:16", "redis:7.4", "temporalio/ui:2", "openbao/openbao:latest", "python:3.11-slim"):
        assert not exact(floating), floating


def test_the_topology() -> None:
    svcs = services()
    assert {"postgres", "redis", "vault", "vault-init", "temporal-schema", "temporal", "temporal-namespace",
            "temporal-ui", "migrate", "worker-1", "worker-2", "gateway"} <= set(svcs)
    assert svcs["temporal"]["image"].startswith("temporalio/server:")
    admin_tools = {svcs[n]["image"] for n in ("temporal-schema", "temporal-namespace")}
    assert len(admin_tools) == 1 and admin_tools.pop().startswith("temporalio/admin-tools:")
    # admin-tools and server move together: the schema job migrates to the server's version.
    assert svcs["temporal-schema"]["image"].split(":")[1].startswith(svcs["temporal"]["image"].split(":")[1] + "-")
    workers = [n for n, s in svcs.items() if s.get("command") == ["python", "-m", "worker"]]
    assert workers == ["worker-1", "worker-2"]
    assert svcs["gateway"]["command"] == ["python", "-m", "gateway"]
    assert svcs["migrate"]["command"] == ["osi", "db", "upgrade"]
    assert svcs["vault"]["image"].startswith(("openbao/openbao:", "hashicorp/vault:"))
    assert svcs["vault"]["command"] == ["server"]  # not -dev


def test_long_running_services_have_healthchecks_and_restart_policies_and_jobs_run_once() -> None:
    svcs = services()
    for name, svc in svcs.items():
        if name in jobs(svcs):
            continue
        assert svc.get("restart") == "unless-stopped", name
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
    assert jobs(svcs) == {"vault-init", "temporal-schema", "temporal-namespace", "migrate"}


def test_dependencies_wait_for_health_or_completion() -> None:
    svcs = services()
    job_names = jobs(svcs)
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on with conditions"
        for dep, cond in deps.items():
            want = "service_completed_successfully" if dep in job_names else "service_healthy"
            if (name, dep) == ("vault-init", "vault"):
                want = "service_started"  # vault is sealed (unhealthy) until this job unseals it
            assert cond == {"condition": want}, f"{name} -> {dep}"
            if want == "service_healthy":
                assert svcs[dep].get("healthcheck"), dep
    for name in ("worker-1", "worker-2", "gateway"):
        assert set(svcs[name]["depends_on"]) == {"postgres", "redis", "vault", "vault-init", "temporal",
                                                  "temporal-namespace", "migrate"}, name
    # Every job is waited for by someone (otherwise it is just a container that may or may not have run).
    waited = {dep for s in svcs.values() for dep in (s.get("depends_on") or {})}
    assert job_names <= waited


def test_application_connects_as_a_non_superuser_role_without_a_password_in_the_url() -> None:
    svcs = services()
    users = {}
    for name in ("worker-1", "worker-2", "gateway", "migrate"):
        url = urlsplit(env(svcs[name])["OSI_DATABASE_URL"])
        assert url.password is None, name
        users[name] = url.username
        assert env(svcs[name])["PGPASSWORD_FILE"].startswith("/run/secrets/"), name
    assert users == {"worker-1": "osi_app", "worker-2": "osi_app", "gateway": "osi_app", "migrate": "osi_owner"}
    init_sql = (ROOT / "deploy" / "postgres" / "init-roles.sql").read_text()
    assert "CREATE ROLE osi_app" in init_sql and "CREATE ROLE osi_owner" in init_sql
    assert "/docker-entrypoint-initdb.d/" in " ".join(svcs["postgres"]["volumes"])


def test_secrets_are_compose_secrets_read_through_file_variables() -> None:
    doc = compose()
    declared = set(doc["secrets"])
    used: set[str] = set()
    for name, svc in doc["services"].items():
        mine = set(svc.get("secrets") or [])
        assert mine <= declared, name
        used |= mine
        for key, value in env(svc).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mine, f"{name}: {key} names a secret it does not mount"
            # A secret-looking setting must come from a file, never inline.
            if re.search(r"PASSWORD|SECRET|API_KEY|TOKEN|PWD", key) and key != "TEMPORAL_CODEC_PASS_ACCESS_TOKEN":
                assert key.endswith("_FILE"), f"{name}: {key} is set inline"
        text = json.dumps(svc)
        assert not re.search(r"redis://:[^@$]+@", text), name
    assert used == declared
    for s in doc["secrets"].values():
        assert s["file"].startswith("./deploy/secrets/")
    # gen-secrets.sh creates every file the stack mounts.
    script = (ROOT / "deploy" / "gen-secrets.sh").read_text()
    for secret in declared:
        assert re.search(rf"put {secret} ", script), secret


def test_state_lives_in_named_volumes_and_redis_keeps_an_append_only_file() -> None:
    doc = compose()
    svcs = doc["services"]
    named = set(doc["volumes"])

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for v in svcs[name].get("volumes", []):
            src, target = v.split(":")[:2]
            out[target] = src
        return out

    assert mounts("postgres")["/var/lib/postgresql/data"] in named
    assert mounts("redis")["/data"] in named
    assert "--appendonly yes" in " ".join(svcs["redis"]["command"])
    vault_storage = re.search(r'storage "\w+" \{\s*path\s*=\s*"([^"]+)"',
                              (ROOT / "deploy" / "vault" / "server.hcl").read_text())
    assert vault_storage and mounts("vault")[vault_storage.group(1)] in named
    # Bind-mounted files exist in the repository.
    for name, svc in svcs.items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).is_file(), f"{name}: {src}"


def test_workers_bind_metrics_and_readiness_on_all_interfaces() -> None:
    svcs = services()
    for name in ("worker-1", "worker-2"):
        e = env(svcs[name])
        assert e["OSI_HOST"] == "0.0.0.0", name
        port = e["OSI_WORKER_HEALTH_PORT"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(svcs[name]["healthcheck"]["test"])
        assert e["OSI_SANDBOX_ENABLED"] == "false" and e["OSI_LIMITER_BACKEND_FILE"] == "/run/secrets/redis_url"
    gw = svcs["gateway"]
    assert env(gw)["OSI_HOST"] == "0.0.0.0"
    assert "127.0.0.1:8080/readyz" in " ".join(gw["healthcheck"]["test"])


def test_vault_and_temporal_jobs() -> None:
    svcs = services()
    init = " ".join(svcs["vault-init"]["command"])
    assert init.startswith("python -m vault.bootstrap") and "--policy-dir=/app/deploy/vault" in init
    approle_volumes = {v.split(":")[0] for v in svcs["vault-init"]["volumes"]}
    assert {"approle-worker", "approle-gateway"} <= approle_volumes
    # Each service mounts only its own AppRole credentials, read-only.
    assert svcs["worker-1"]["volumes"] == ["approle-worker:/var/lib/osi/approle/osi-worker:ro"]
    assert svcs["gateway"]["volumes"] == ["approle-gateway:/var/lib/osi/approle/osi-gateway:ro"]
    script = (ROOT / "deploy" / "temporal" / "setup-schema.sh").read_text()
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert step in script
    assert "temporal:temporal" in script and "temporal_visibility:visibility" in script
    ui = env(svcs["temporal-ui"])
    assert default_of(ui["TEMPORAL_CODEC_ENDPOINT"]) == "http://gateway:8080/codec"
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"


def test_app_settings_named_in_compose_exist() -> None:
    from core.settings import Settings

    fields = set(Settings.model_fields)
    # The entrypoint leaves these as files (the Vault client re-reads them); every other *_FILE becomes the
    # variable without the suffix.
    script = (ROOT / "deploy" / "docker-entrypoint.sh").read_text()
    kept_files = set(re.search(r"^\s*(OSI_\w+(?:\|OSI_\w+)*)\) continue ;;", script, re.M).group(1).split("|"))
    assert kept_files == {"OSI_VAULT_TOKEN_FILE", "OSI_VAULT_SECRET_ID_FILE"}
    for name, svc in services().items():
        for key in env(svc):
            if not key.startswith("OSI_") or key in ("OSI_HEALTHCHECK_URL",):
                continue
            field = key.removeprefix("OSI_").lower()
            if key not in kept_files:
                field = field.removesuffix("_file")
            assert field in fields, f"{name}: {key} is not a setting"


def test_services_use_temporal_envconfig_and_the_migrations_job_owns_the_schema() -> None:
    svcs = services()
    for name in ("worker-1", "worker-2", "gateway"):
        e = env(svcs[name])
        assert e["TEMPORAL_ADDRESS"] == "temporal:7233" and e["TEMPORAL_NAMESPACE"] == "default", name
        # No OSI_TEMPORAL_* override: switching to Temporal Cloud is TEMPORAL_* only (docs/deploy.md 5.2).
        assert not [k for k in e if k.startswith("OSI_TEMPORAL_") and k != "OSI_TEMPORAL_UI_URL"], name
        assert e["OSI_MIGRATE_ON_START"] == "false", name
    assert "OSI_MIGRATE_ON_START" not in env(svcs["migrate"])  # the job migrates: `osi db upgrade`
    for name in ("worker-1", "worker-2"):
        e = env(svcs[name])
        # Worker Versioning is opt-in from .env: both empty by default (an unversioned stack comes up by itself).
        assert default_of(e["OSI_WORKER_DEPLOYMENT_NAME"]) == default_of(e["OSI_WORKER_BUILD_ID"]) == ""


def test_healthcheck_script_picks_the_process_of_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import healthcheck  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for k in ("OSI_HEALTHCHECK_URL", "OSI_GATEWAY_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OSI_WORKER_HEALTH_PORT", "8081")  # the image's default
    assert healthcheck.url_from_env(["python", "-m", "worker"]) == "http://127.0.0.1:8081/readyz"
    assert healthcheck.url_from_env(["python", "-m", "gateway"]) == "http://127.0.0.1:8080/readyz"
    assert healthcheck.url_from_env(["/opt/venv/bin/osi", "gateway"]) == "http://127.0.0.1:8080/readyz"
    monkeypatch.setenv("OSI_WORKER_HEALTH_PORT", "0")
    assert healthcheck.url_from_env(["python", "-m", "worker"]) == "http://127.0.0.1:8080/readyz"
    monkeypatch.setenv("OSI_HEALTHCHECK_URL", "http://127.0.0.1:1/x")
    assert healthcheck.url_from_env(["python", "-m", "gateway"]) == "http://127.0.0.1:1/x"
    # The image's worker port is the one compose probes and the Dockerfile exposes.
    image_port = re.search(r"OSI_WORKER_HEALTH_PORT=(\d+)", dockerfile())
    assert image_port and image_port.group(1) in re.search(r"^EXPOSE (.*)$", dockerfile(), re.M).group(1).split()
    assert env(services()["worker-1"])["OSI_WORKER_HEALTH_PORT"] == image_port.group(1)


# ---- Dockerfile ---------------------------------------------------------------------------------------

def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_is_multi_stage_pinned_non_root_with_healthcheck() -> None:
    text = dockerfile()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and exact(base.group(1)) and "@sha256:" in base.group(1)
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [s[1] for s in stages] == ["builder", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "pip install" not in runtime  # nothing resolved at the last stage
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    user = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert re.search(r"^HEALTHCHECK .*CMD .*healthcheck\.py", runtime, re.M)
    builder = text.split("AS runtime", 1)[0]
    assert "pip install --require-hashes -r requirements.lock" in builder
    assert "--no-deps --no-build-isolation ." in builder
    assert re.search(r"compileall .*-f .*--invalidation-mode unchecked-hash /opt/venv/lib", builder)


def test_bytecode_is_written_at_build_and_install_time_never_at_run_time() -> None:
    """The image runs as a user who cannot write site-packages: every .pyc must exist before USER, made after the
    project is installed (an earlier compile would miss our own modules); `make install` compiles every package."""
    text = dockerfile()
    builder, runtime = text.split("AS runtime", 1)
    install = builder.index("--no-deps --no-build-isolation .")
    compile_step = re.search(r"^RUN /opt/venv/bin/python -m compileall (.*) /opt/venv/lib$", builder, re.M)
    assert compile_step and compile_step.start() > install, "compileall after our package is installed"
    assert "--invalidation-mode unchecked-hash" in compile_step.group(1)  # mtimes change in COPY --from
    stdlib = re.search(r"^RUN python -m compileall .*/usr/local/lib/python3\.\d+", runtime, re.M)
    assert stdlib and stdlib.start() < runtime.index("\nUSER "), "the standard library compiled before USER"
    assert re.search(r"^\s*PYTHONDONTWRITEBYTECODE=1", runtime, re.M)  # no write attempts at run time

    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^install: .*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "-m compileall" in recipe.group(1), "make install precompiles the packages"
    packages = set(re.search(r"^PACKAGES := (.*)$", makefile, re.M).group(1).split())  # type: ignore[union-attr]
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert packages == {p.rstrip("*") for p in includes["include"]}


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile(), re.M))
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for pattern in includes:
        pkg = pattern.rstrip("*")
        assert pkg in copied, f"Dockerfile does not COPY {pkg}"
        assert pkg not in ignored


@pytest.fixture
def entrypoint_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "key").write_text("s3cret-admin\n")
    (tmp_path / "pg").write_text("pg-pass\n")
    (tmp_path / "sid").write_text("secret-id\n")
    (tmp_path / "tak").write_text("cloud-api-key\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OSI_", "PG", "TEMPORAL_"))}
    return {**base, "OSI_ADMIN_API_KEY_FILE": str(tmp_path / "key"), "PGPASSWORD_FILE": str(tmp_path / "pg"),
            "OSI_VAULT_SECRET_ID_FILE": str(tmp_path / "sid"), "TEMPORAL_API_KEY_FILE": str(tmp_path / "tak")}


def test_entrypoint_turns_file_variables_into_values(entrypoint_env: dict[str, str]) -> None:
    out = subprocess.run(["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "env"], env=entrypoint_env,
                         capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert seen["OSI_ADMIN_API_KEY"] == "s3cret-admin" and seen["PGPASSWORD"] == "pg-pass"
    assert seen["TEMPORAL_API_KEY"] == "cloud-api-key"  # Temporal Cloud, read by temporalio.envconfig
    assert "OSI_ADMIN_API_KEY_FILE" not in seen
    # The Vault client re-reads this one itself (rotation without a restart): left as a path.
    assert seen["OSI_VAULT_SECRET_ID_FILE"] == entrypoint_env["OSI_VAULT_SECRET_ID_FILE"]
    assert "OSI_VAULT_SECRET_ID" not in seen


def test_entrypoint_empty_file_variable_switches_it_off(entrypoint_env: dict[str, str]) -> None:
    out = subprocess.run(["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "env"],
                         env={**entrypoint_env, "OSI_VAULT_ROLE_ID_FILE": "", "PGPASSWORD_FILE": ""},
                         capture_output=True, text=True, check=True).stdout
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert not names & {"OSI_VAULT_ROLE_ID", "OSI_VAULT_ROLE_ID_FILE", "PGPASSWORD", "PGPASSWORD_FILE"}


def test_entrypoint_refuses_a_value_given_twice_or_an_unreadable_file(entrypoint_env: dict[str, str]) -> None:
    twice = subprocess.run(["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "true"],
                           env={**entrypoint_env, "OSI_ADMIN_API_KEY": "inline"}, capture_output=True, text=True)
    assert twice.returncode == 64 and "both OSI_ADMIN_API_KEY and OSI_ADMIN_API_KEY_FILE" in twice.stderr
    missing = subprocess.run(["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "true"],
                             env={**entrypoint_env, "PGPASSWORD_FILE": "/nonexistent"}, capture_output=True,
                             text=True)
    assert missing.returncode == 66


@pytest.fixture
def readiness_server() -> Iterator[tuple[str, list[int]]]:
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", status
    srv.shutdown()


def test_healthcheck_script_reports_readiness(readiness_server: tuple[str, list[int]]) -> None:
    url, status = readiness_server
    script = str(ROOT / "deploy" / "healthcheck.py")

    def check(env_extra: dict[str, str], *args: str) -> int:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OSI_")}
        return subprocess.run([sys.executable, script, *args], env={**clean, **env_extra},
                              capture_output=True).returncode

    assert check({}, f"{url}/readyz") == 0
    port = url.rsplit(":", 1)[1]
    assert check({"OSI_WORKER_HEALTH_PORT": port}) == 0  # the worker's endpoint from its setting
    status[0] = 503
    assert check({}, f"{url}/readyz") == 1
    assert check({"OSI_HEALTHCHECK_URL": f"{url}/readyz"}) == 1


# ---- README / CI ----------------------------------------------------------------------------------------

def test_readme_opens_with_run_and_test_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "make run" in head and "make test" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make install" in ci and "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.lock" in makefile


def _compose_cli() -> list[str] | None:
    import shutil

    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no Compose CLI (.ci/run installs Debian's docker-compose)")
def test_compose_cli_accepts_the_file_with_generated_secrets(tmp_path: Path) -> None:
    """Compose itself (v1 where that is what is installed: it refuses what v1 cannot run) parses the file,
    resolves the anchors and finds every secret file that deploy/gen-secrets.sh creates. No daemon needed."""
    import shutil

    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(["sh", str(tmp_path / "deploy" / "gen-secrets.sh")], check=True, capture_output=True)
    assert oct((tmp_path / "deploy" / "secrets").stat().st_mode & 0o777) == "0o700"
    cli = _compose_cli()
    assert cli is not None
    out = subprocess.run([*cli, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COMPOSE_PROJECT_NAME": "osi"})
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(resolved["services"]) == set(services())
    for name, secret in resolved["secrets"].items():
        assert Path(secret["file"]).is_file(), name
