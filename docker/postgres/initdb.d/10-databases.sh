#!/bin/sh
# First start of the stack's Postgres (official image contract: runs once, on an empty data directory, as the
# superuser POSTGRES_USER, which nothing else in the stack connects as). One role per service, least privilege:
#
#   role          database       can                                    used by
#   mlflow        mlflow         owns it (MLflow tracking and registry)  mlflow
#   mlflow        mlflow_auth    owns it (MLflow basic-auth users)       mlflow
#   prefect       prefect        owns it (flow runs, deployments)        prefect-server
#   feast         feast          owns it (Feast SQL registry)            train, worker (apply, materialize)
#   feast_reader  feast          SELECT only, also on tables feast       serving
#                                creates later (default privileges)
#
# No role can connect to another service's database (CONNECT revoked from PUBLIC). The passwords come from the
# environment of the postgres container only; changing them later is `ALTER ROLE` (docs/compose.md).
set -eu

for variable in MLFLOW_DB_PASSWORD PREFECT_DB_PASSWORD FEAST_DB_PASSWORD FEAST_READER_DB_PASSWORD; do
  eval "value=\${$variable:-}"
  if [ -z "$value" ]; then
    echo "initdb: $variable is not set" >&2
    exit 1
  fi
done

# The passwords are read from the environment by psql itself (\getenv; :'name' quotes them as literals), so
# they are on no command line.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -q <<'SQL'
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv prefect_password PREFECT_DB_PASSWORD
\getenv feast_password FEAST_DB_PASSWORD
\getenv feast_reader_password FEAST_READER_DB_PASSWORD
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE ROLE feast LOGIN PASSWORD :'feast_password';
CREATE ROLE feast_reader LOGIN PASSWORD :'feast_reader_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE prefect OWNER prefect;
CREATE DATABASE feast OWNER feast;
REVOKE ALL ON DATABASE mlflow, mlflow_auth, prefect, feast FROM PUBLIC;
GRANT CONNECT ON DATABASE feast TO feast_reader;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname feast -q <<'SQL'
-- PostgreSQL 15: the public schema belongs to the database owner (feast); nobody else may create in it.
ALTER SCHEMA public OWNER TO feast;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO feast_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO feast_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE feast IN SCHEMA public GRANT SELECT ON TABLES TO feast_reader;
SQL
# Prefect's migrations create pg_trgm (trusted since PostgreSQL 13, so its owner could; made here to be sure).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname prefect -qc "CREATE EXTENSION IF NOT EXISTS pg_trgm"
echo "created roles mlflow, prefect, feast, feast_reader and their databases"
