#!/bin/sh
# Compose job (temporalio/admin-tools): create Temporal's two PostgreSQL databases and bring their schemas
# to the version this admin-tools image ships. Safe on every `up`: an existing schema is only updated.
# The same image version as temporalio/server must be used (docs/deploy.md "Upgrading Temporal").
set -eu

SQL_PASSWORD="$(cat "${SQL_PASSWORD_FILE:?}")"
export SQL_PASSWORD
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --endpoint "${SQL_HOST:-postgres}" --port "${SQL_PORT:-5432}" \
    --user "${SQL_USER:-temporal}" --password "$SQL_PASSWORD" "$@"
}

for pair in "temporal:temporal" "temporal_visibility:visibility"; do
  db="${pair%%:*}"
  dir="$SCHEMA_ROOT/${pair##*:}/versioned"
  # update-schema succeeds only on a database that was set up before: the common case after the first start.
  if sql_tool --db "$db" update-schema -d "$dir"; then
    echo "schema of $db is up to date"
    continue
  fi
  echo "setting up $db"
  sql_tool --db "$db" create || echo "database $db exists already (a previous setup stopped half-way)"
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$dir"
done
