"""First-time setup of a production Vault/OpenBao: engines, payload key, policies, AppRoles (idempotent)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
from hvac.exceptions import InvalidPath

# AppRole name -> the policy (an HCL file `<policy>.hcl` in the policy folder) its tokens carry.
DEFAULT_ROLES: Mapping[str, str] = {"osi-worker": "osi-worker", "osi-gateway": "osi-gateway"}
# Policies written without an AppRole: humans get them through their own login method.
EXTRA_POLICIES: tuple[str, ...] = ("osi-operator",)


@dataclass(frozen=True)
class RoleCredentials:
    """An AppRole's login pair; the secret id never appears in repr()."""

    role: str
    role_id: str
    secret_id: str = field(repr=False)
    secret_id_accessor: str = ""


@dataclass
class BootstrapResult:
    """What `bootstrap` did: roles with fresh credentials, policies written, mounts enabled, files written."""

    roles: dict[str, RoleCredentials]
    policies: list[str]
    enabled: list[str]
    files: list[Path]


def default_policy_dir() -> Path:
    """`deploy/vault` of the source tree, else of the working directory (the container's /app)."""
    for candidate in (Path(__file__).resolve().parent.parent / "deploy" / "vault", Path.cwd() / "deploy" / "vault"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no deploy/vault policy folder found; pass policy_dir")


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _check_policy_paths(name: str, text: str, kv_mount: str, transit_mount: str, transit_key: str) -> None:
    # The HCL files name the default mounts literally (they stay valid input for `bao policy write`);
    # a bootstrap with other mounts would silently grant nothing, so refuse it.
    wanted = [f'"{kv_mount}/data/osi/', f'"{transit_mount}/decrypt/{transit_key}"']
    missing = [w for w in wanted if w not in text]
    if missing:
        raise ValueError(f"policy {name} does not mention {', '.join(missing)}: edit deploy/vault/{name}.hcl "
                         "to match the mounts and key you bootstrap")


def bootstrap(
    client: hvac.Client,
    *,
    policy_dir: Path | None = None,
    write_dir: Path | None = None,
    kv_mount: str = "secret",
    transit_mount: str = "transit",
    transit_key: str = "osi-payloads",
    approle_mount: str = "approle",
    roles: Mapping[str, str] = DEFAULT_ROLES,
    token_ttl: str = "1h",
    token_max_ttl: str = "24h",
    secret_id_ttl: str = "0",
) -> BootstrapResult:
    """Set up a fresh (initialized, unsealed) Vault/OpenBao for this service; safe to run again.

    `client` must carry a root or admin token. Steps, each skipped when already done: mount KV v2 at
    `kv_mount` (a KV v1 mount there is upgraded to v2), mount transit at `transit_mount`, create the
    payload key `transit_key` (aes256-gcm96, not exportable, not deletable), write every policy found as
    `<name>.hcl` in `policy_dir` (default: deploy/vault), enable AppRole at `approle_mount`, and create or
    update one role per entry of `roles` (role name -> policy name) whose tokens are renewable service
    tokens living `token_ttl` (renewed up to `token_max_ttl`; the client logs in again after that).

    Each role gets a fresh secret id (so a second run rotates them; `secret_id_ttl` "0" = no expiry,
    reusable, because the services log in again when their token dies). With `write_dir`, the pair is
    also written to `write_dir/<role>/role_id` and `write_dir/<role>/secret_id` (mode 0600), the files
    `OSI_VAULT_ROLE_ID_FILE` / `OSI_VAULT_SECRET_ID_FILE` point at.
    """
    policy_dir = policy_dir or default_policy_dir()
    # Read and check every policy before changing anything on the server.
    policies = {name: (policy_dir / f"{name}.hcl").read_text() for name in sorted({*roles.values(), *EXTRA_POLICIES})}
    for name, text in policies.items():
        _check_policy_paths(name, text, kv_mount, transit_mount, transit_key)
    enabled: list[str] = []

    mounts = client.sys.list_mounted_secrets_engines()["data"]
    kv = mounts.get(f"{kv_mount}/")
    if kv is None:
        client.sys.enable_secrets_engine("kv", path=kv_mount, options={"version": "2"})
        enabled.append(f"{kv_mount}/ (kv v2)")
    elif kv.get("type") != "kv":
        raise ValueError(f"{kv_mount}/ is mounted as {kv.get('type')}, not kv")
    elif str((kv.get("options") or {}).get("version", "1")) != "2":
        client.sys.tune_mount_configuration(path=kv_mount, options={"version": "2"})  # in-place upgrade
        enabled.append(f"{kv_mount}/ (kv v1 upgraded to v2)")
    if f"{transit_mount}/" not in mounts:
        client.sys.enable_secrets_engine("transit", path=transit_mount)
        enabled.append(f"{transit_mount}/ (transit)")
    try:
        client.secrets.transit.read_key(name=transit_key, mount_point=transit_mount)
    except InvalidPath:
        client.secrets.transit.create_key(name=transit_key, key_type="aes256-gcm96", mount_point=transit_mount)
        enabled.append(f"{transit_mount}/keys/{transit_key}")

    for name, text in policies.items():
        client.sys.create_or_update_policy(name=name, policy=text)

    if f"{approle_mount}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle", path=approle_mount)
        enabled.append(f"auth/{approle_mount}")

    result: dict[str, RoleCredentials] = {}
    files: list[Path] = []
    for role, policy in roles.items():
        client.auth.approle.create_or_update_approle(
            role,
            token_policies=[policy],
            token_ttl=token_ttl,
            token_max_ttl=token_max_ttl,
            token_type="service",  # renewable (batch tokens cannot be renewed)
            secret_id_ttl=secret_id_ttl,
            secret_id_num_uses=0,
            mount_point=approle_mount,
        )
        role_id = client.auth.approle.read_role_id(role, mount_point=approle_mount)["data"]["role_id"]
        sid = client.auth.approle.generate_secret_id(role, mount_point=approle_mount)["data"]
        creds = RoleCredentials(role, role_id, sid["secret_id"], sid.get("secret_id_accessor", ""))
        result[role] = creds
        if write_dir is not None:
            for fname, value in (("role_id", creds.role_id), ("secret_id", creds.secret_id)):
                _write_private(write_dir / role / fname, value + "\n")
                files.append(write_dir / role / fname)
    return BootstrapResult(result, list(policies), enabled, files)


# ---- the compose job: wait, init (first start), unseal, bootstrap -------------------------------------

def initialize(client: hvac.Client, *, shares: int = 1, threshold: int = 1) -> dict[str, Any]:
    """`operator init`: returns {"keys_b64": [...], "root_token": ...}; the caller must store them safely."""
    resp: dict[str, Any] = client.sys.initialize(secret_shares=shares, secret_threshold=threshold)
    return {"keys_b64": resp["keys_base64"], "root_token": resp["root_token"]}


def unseal(client: hvac.Client, keys: Sequence[str]) -> bool:
    """Submit unseal keys until the server reports unsealed; True when it is."""
    for key in keys:
        if not client.sys.submit_unseal_key(key)["sealed"]:
            return True
    return not client.sys.is_sealed()


def wait_active(client: hvac.Client, seconds: float = 30.0) -> None:
    """Wait until the unsealed server is the active node: with integrated storage a node elects itself
    leader a moment after unsealing, and refuses requests until then."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            leader = client.sys.read_leader_status()
            if not leader.get("ha_enabled") or leader.get("is_self"):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("vault did not become the active node")
        time.sleep(0.2)


def _wait_reachable(client: hvac.Client, seconds: float) -> None:
    # The server container starts alongside this job; polling its health is the job's first step.
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.sys.is_initialized()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _lines(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Compose job / operator entry point: `python -m vault.bootstrap --help`."""
    p = argparse.ArgumentParser(prog="python -m vault.bootstrap", description=__doc__)
    p.add_argument("--addr", default=os.environ.get("OSI_VAULT_ADDR") or os.environ.get("BAO_ADDR")
                   or os.environ.get("VAULT_ADDR") or "http://127.0.0.1:8200")
    p.add_argument("--init-file", type=Path,
                   help="initialize an uninitialized server and store its unseal keys and root token here "
                        "(JSON, mode 0600); also read for unsealing and bootstrapping when the files below are empty")
    p.add_argument("--key-shares", type=int, default=1)
    p.add_argument("--key-threshold", type=int, default=1)
    p.add_argument("--unseal-keys-file", type=Path, help="unseal keys, one per line (a Compose secret)")
    p.add_argument("--root-token-file", type=Path, help="root/admin token for the bootstrap (a Compose secret)")
    p.add_argument("--policy-dir", type=Path, default=None)
    p.add_argument("--write-dir", type=Path, required=True, help="writes <dir>/<role>/role_id and secret_id")
    p.add_argument("--token-ttl", default="1h")
    p.add_argument("--token-max-ttl", default="24h")
    p.add_argument("--rotate", action="store_true", help="bootstrap again although every role's files exist")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server to answer")
    args = p.parse_args(argv)

    client = hvac.Client(url=args.addr, timeout=10)
    _wait_reachable(client, args.wait)
    init: dict[str, Any] = {}
    if args.init_file is not None and args.init_file.exists():
        init = json.loads(args.init_file.read_text())
    if not client.sys.is_initialized():
        if args.init_file is None:
            print("vault is not initialized: run `bao operator init` (see docs/deploy.md) or pass --init-file",
                  file=sys.stderr)
            return 2
        init = initialize(client, shares=args.key_shares, threshold=args.key_threshold)
        _write_private(args.init_file, json.dumps(init))
        print(f"initialized; unseal keys and root token stored in {args.init_file}: move them offline")
    if client.sys.is_sealed():
        keys = _lines(args.unseal_keys_file) or list(init.get("keys_b64", []))
        if not keys:
            print("vault is sealed and no unseal keys were given", file=sys.stderr)
            return 2
        if not unseal(client, keys):
            print("vault is still sealed: not enough valid unseal keys", file=sys.stderr)
            return 2
        print("unsealed")
    wait_active(client, args.wait)
    roles = list(DEFAULT_ROLES)
    have = all((args.write_dir / r / f).exists() for r in roles for f in ("role_id", "secret_id"))
    if have and not args.rotate:
        print("AppRole credentials already present; nothing to bootstrap (use --rotate to redo)")
        return 0
    token = next(iter(_lines(args.root_token_file)), None) or init.get("root_token") or os.environ.get("VAULT_TOKEN")
    if not token:
        print("bootstrap needs a root/admin token (--root-token-file, --init-file or VAULT_TOKEN)", file=sys.stderr)
        return 2
    client.token = token
    result = bootstrap(client, policy_dir=args.policy_dir, write_dir=args.write_dir,
                       token_ttl=args.token_ttl, token_max_ttl=args.token_max_ttl)
    print(f"enabled: {', '.join(result.enabled) or 'nothing new'}; policies: {', '.join(result.policies)}; "
          f"roles: {', '.join(result.roles)} (ids in {args.write_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
