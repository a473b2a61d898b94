-- Roles of the compose stack's PostgreSQL. Runs once, when the data volume is first initialized
-- (/docker-entrypoint-initdb.d), as the bootstrap superuser, connected to the application database
-- (POSTGRES_DB=osi). Passwords come from Compose secrets; override the file paths with
-- `psql -v owner_password_file=... -v app_password_file=... -v temporal_password_file=...`.
\set ON_ERROR_STOP on
\if :{?owner_password_file}
\else
  \set owner_password_file /run/secrets/osi_owner_db_password
\endif
\if :{?app_password_file}
\else
  \set app_password_file /run/secrets/osi_app_db_password
\endif
\if :{?temporal_password_file}
\else
  \set temporal_password_file /run/secrets/temporal_db_password
\endif
\set owner_password `cat :owner_password_file`
\set app_password `cat :app_password_file`
\set temporal_password `cat :temporal_password_file`

-- Temporal's role: temporal-sql-tool creates its two databases (temporal, temporal_visibility) as it.
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';

-- osi_owner owns the schema and every table in it; only the migrations job (`osi db upgrade`) logs in
-- as it. It is not a superuser and cannot create roles or databases.
CREATE ROLE osi_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
-- osi_app is what the worker and the gateway log in as: data manipulation in the osi schema only. It
-- owns nothing, so it can never ALTER, DROP or TRUNCATE a table (TRUNCATE is not granted either).
CREATE ROLE osi_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
-- Applications can issue a statement that runs forever; the pool would starve. Bound it.
ALTER ROLE osi_app SET statement_timeout = '60s';
ALTER ROLE osi_app SET idle_in_transaction_session_timeout = '60s';

-- Nobody else connects to the application database; nobody creates objects in `public`.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO osi_owner, osi_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA osi AUTHORIZATION osi_owner;
REVOKE ALL ON SCHEMA osi FROM PUBLIC;
GRANT USAGE ON SCHEMA osi TO osi_app;
ALTER ROLE osi_owner SET search_path = osi;
ALTER ROLE osi_app SET search_path = osi;

-- Every table and sequence the owner creates later (in migrations) is usable by the application: rows
-- only. The audit log is append-only for the application: the migration that creates it revokes
-- UPDATE and DELETE on it from osi_app, e.g.
--   REVOKE UPDATE, DELETE ON audit_event FROM osi_app;
-- so osi_app may INSERT and SELECT audit rows and nothing else (its trigger guards the owner too).
ALTER DEFAULT PRIVILEGES FOR ROLE osi_owner IN SCHEMA osi
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO osi_app;
ALTER DEFAULT PRIVILEGES FOR ROLE osi_owner IN SCHEMA osi
  GRANT USAGE, SELECT ON SEQUENCES TO osi_app;
-- Functions are executable by PUBLIC by default; only the application needs them.
ALTER DEFAULT PRIVILEGES FOR ROLE osi_owner IN SCHEMA osi REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE osi_owner IN SCHEMA osi GRANT EXECUTE ON FUNCTIONS TO osi_app;
