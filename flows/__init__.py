"""Prefect 3 flows that orchestrate reruns of the pipeline. They hold no ML logic: they call the library."""
