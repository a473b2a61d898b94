#!/bin/sh
# Create the Compose secrets of docker-compose.yml under deploy/secrets/ (existing files are kept).
# The folder is 0700 (only its owner reaches the files); the files are 0644 because Compose bind-mounts
# them unchanged and the services run as non-root users inside their containers.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

put() {  # put NAME VALUE: write once
  if [ ! -e "$dir/$1" ]; then
    printf '%s\n' "$2" > "$dir/$1"
    chmod 644 "$dir/$1"
    echo "created $dir/$1"
  fi
}

put postgres_password "$(random)"
put osi_owner_db_password "$(random)"
put osi_app_db_password "$(random)"
put temporal_db_password "$(random)"
put admin_api_key "$(random)"
if [ ! -e "$dir/redis_password" ]; then
  pw="$(random)"
  put redis_password "$pw"
  put redis_url "redis://:$pw@redis:6379/0"
fi
# Vault: empty until the operator decides where unseal keys live (docs/deploy.md "Vault").
put vault_unseal_keys ""
put vault_root_token ""
