#!/bin/sh
# First start of the stack's Postgres (official image contract: runs once, on an empty data directory):
# one database per service that keeps state here. Owned by POSTGRES_USER, which the services connect as.
#   mlflow   MLflow tracking and model registry (backend store)
#   prefect  Prefect server (flow runs, deployments, schedules)
#   feast    Feast SQL registry (feature views and services; online values live in Redis)
set -eu
for database in mlflow prefect feast; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -qc "CREATE DATABASE $database"
done
echo "created databases: mlflow, prefect, feast"
