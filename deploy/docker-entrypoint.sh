#!/bin/sh
# Container entrypoint: turns `NAME_FILE=/run/secrets/x` into `NAME=<contents of x>` for OSI_* settings and
# PGPASSWORD (libpq reads it, so the database URL carries no password) and TEMPORAL_API_KEY (Temporal Cloud,
# read by temporalio.envconfig), then runs the command.
# OSI_VAULT_TOKEN_FILE and OSI_VAULT_SECRET_ID_FILE stay files: the Vault client re-reads them when they
# change (Vault Agent rewrites the token; an operator rotates the secret id).
set -eu

for assignment in $(env | grep -E '^(OSI_[A-Z0-9_]+|PGPASSWORD|TEMPORAL_API_KEY)_FILE=' | cut -d= -f1); do
  case "$assignment" in
    OSI_VAULT_TOKEN_FILE|OSI_VAULT_SECRET_ID_FILE) continue ;;
  esac
  name="${assignment%_FILE}"
  file="$(printenv "$assignment")"
  if [ -z "$file" ]; then  # `-e NAME_FILE=` switches a file variable off (operator one-off commands)
    unset "$assignment"
    continue
  fi
  if [ -n "$(printenv "$name" || true)" ]; then
    echo "entrypoint: both $name and $assignment are set; use one" >&2
    exit 64
  fi
  if [ ! -r "$file" ]; then
    echo "entrypoint: $assignment points at $file, which is not readable" >&2
    exit 66
  fi
  # $(cat) drops trailing newlines, as secret files usually end with one.
  export "$name=$(cat "$file")"
  unset "$assignment"
done

exec "$@"
