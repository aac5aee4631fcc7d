"""Adapters to the outside world: files, the Feast feature store, MLflow tracking and registry."""
