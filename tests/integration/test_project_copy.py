"""The suite's trained project copies (``trained_copy``): each one names only itself, and its stores still open.

Many modules take a copy of the session's one trained project instead of running `dvc repro` again; a copy whose
MLflow or Feast records still pointed at the original would let one test's writes reach every later copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_a_trained_copy_records_no_path_of_the_original(trained_copy: Any, trained_template: Any) -> None:
    from mlops_recipes.io import feature_store
    from mlops_recipes.settings import Settings

    copy = trained_copy("copy-check")
    original = str(trained_template.root).encode()

    naming_the_original = [
        path.relative_to(copy.root)
        for path in copy.root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(copy.root).parts and original in path.read_bytes()
    ]

    assert naming_the_original == []
    # The rewritten Feast registry still parses, and its file sources are the copy's tables.
    store = feature_store.open_store(Settings(project_root=copy.root))
    sources = {Path(source.path) for source in store.list_data_sources()}
    assert sources == {
        copy.root / "data/features/customer_stats.parquet",
        copy.root / "data/features/merchant_stats.parquet",
    }
    # The MLflow records point at the copy's artifacts, which are there.
    client = copy.mlflow_client()
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    model_id = champion.source.removeprefix("models:/")  # the version's logged model
    location = Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    assert location.is_relative_to(copy.root)
    assert (location / "MLmodel").is_file()
