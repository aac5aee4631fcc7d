"""Adding a feature view is adding one file (issue 13), in a trained project copy, through the real pipeline.

The user drops one module into ``src/mlops_recipes/views/`` (a merchant view with ``since`` the next service) and
points ``features.service`` at that service; ``dvc repro train`` then computes the table, publishes the view and the
new service in Feast, builds the training set and trains on it. The service the champion uses stays exactly as it
was (a changed one would be refused: it is in use). The stages import the package from the copy, new file included.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

NEW_FEATURES = ("merch_night_share_1d", "merch_amount_max_1d")


def _new_view(since: str) -> str:
    return textwrap.dedent(
        f'''
        """merchant_nights: yesterday's share of night-time transactions and largest amount, per merchant."""

        from __future__ import annotations

        from datetime import timedelta

        import pandas as pd

        from mlops_recipes.contract import AMOUNT, EVENT_TIME, MERCHANT
        from mlops_recipes.params import FeatureParams
        from mlops_recipes.views import FeatureViewSpec, StoredFeature


        def compute(transactions: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
            hour = transactions[EVENT_TIME].dt.hour
            daily = (
                transactions.assign(day=transactions[EVENT_TIME].dt.floor("D"), night=(hour < 6) | (hour >= 22))
                .groupby([MERCHANT, "day"], as_index=False)
                .agg(night=("night", "mean"), largest=(AMOUNT, "max"))
            )
            return pd.DataFrame(
                {{
                    MERCHANT: daily[MERCHANT],
                    EVENT_TIME: daily["day"] + pd.Timedelta(days=1),  # known once the day is over
                    "{NEW_FEATURES[0]}": daily["night"].astype("float64"),
                    "{NEW_FEATURES[1]}": daily["largest"].astype("float64"),
                }}
            )


        VIEW = FeatureViewSpec(
            name="merchant_nights",
            entity="merchant",
            features=(StoredFeature("{NEW_FEATURES[0]}", "float64"), StoredFeature("{NEW_FEATURES[1]}", "float64")),
            ttl=timedelta(days=2),
            refresh="daily",
            compute=compute,
            description="Yesterday's night-time share and largest amount at the merchant.",
            since="{since}",
        )
        '''
    )


def _next_version(service: str) -> str:
    stem = service.rstrip("0123456789")
    return f"{stem}{int(service[len(stem) :] or 0) + 1}"


def _registry(root: Path) -> dict[str, Any]:
    """What the project's Feast registry holds: per service, its spec (bytes), meaning and feature references."""
    from mlops_recipes.io import feature_store
    from mlops_recipes.settings import Settings

    store = feature_store.open_store(Settings(project_root=root))
    registered = feature_store.Definitions(
        entities=store.list_entities(),
        data_sources=[],
        feature_views=store.list_feature_views(),
        feature_services=store.list_feature_services(),
    )
    return {
        service.name: {
            # Every apply stamps the objects it registers: what the service means is the rest.
            "spec": re.sub(r"(created|last_updated)_timestamp \{[^}]*\}", "", str(service.to_proto().spec)),
            "definition": feature_store.service_definition(service, registered),
            "references": feature_store.feature_references(store, service.name),
        }
        for service in registered.feature_services
    }


@pytest.fixture(scope="module")
def extended(trained_copy: Any) -> Any:
    project = trained_copy("new-view")
    project.env["PYTHONPATH"] = str(project.root / "src")  # the stages import the copy's package
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    project.old_service = params["features"]["service"]
    project.new_service = _next_version(project.old_service)
    project.before = _registry(project.root)

    # What the user writes: one file, and one line of params.
    (project.root / "src/mlops_recipes/views/merchant_nights.py").write_text(_new_view(project.new_service))
    params["features"]["service"] = project.new_service
    (project.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    project.repro = project.run("dvc", "repro", "train")
    return project


def test_only_the_stages_after_the_views_ran(extended: Any) -> None:
    printed = extended.repro.stdout
    ran = {line.split("'")[1] for line in printed.splitlines() if line.startswith("Running stage '")}
    assert ran == {"features", "dataset", "train"}, printed
    report = json.loads((extended.root / "reports/features.json").read_text())
    assert set(report["tables"]) == {"customer_stats", "merchant_stats", "merchant_nights"}  # the copy's package
    assert report["feature_service"] == extended.new_service


def test_the_new_service_is_the_old_one_plus_the_new_view_and_the_old_one_is_unchanged(extended: Any) -> None:
    after = _registry(extended.root)
    old, new = extended.old_service, extended.new_service

    assert set(after) == {old, new}
    assert after[old] == extended.before[old]  # byte for byte: the champion's service
    assert after[new]["references"] == [*after[old]["references"], *(f"merchant_nights:{f}" for f in NEW_FEATURES)]
    assert after[new]["definition"][: len(after[old]["definition"])] == after[old]["definition"]


def test_the_training_set_and_the_model_read_the_new_features(extended: Any) -> None:
    import mlflow

    root = extended.root
    train = pd.read_parquet(root / "data/dataset/train.parquet")
    for feature in NEW_FEATURES:
        assert feature in train.columns
        assert train[feature].notna().mean() > 0.5, feature  # joined point in time, not left empty

    trained = json.loads((root / "artifacts/train_run.json").read_text())
    assert trained["feature_service"] == extended.new_service
    client = extended.mlflow_client()
    location = client.get_logged_model(trained["model_id"]).artifact_location.removeprefix("file://")
    signature = mlflow.models.Model.load(str(Path(location) / "MLmodel")).signature
    inputs = signature.inputs.input_names()
    assert inputs == trained["features"]
    # After the stored features of the old service, before the request-time ones.
    stored_before = inputs.index("merch_amount_mean_7d")
    assert inputs[stored_before + 1 : stored_before + 3] == list(NEW_FEATURES)
    assert inputs[stored_before + 3] == "amount"


BATCH_SCORE = """
import datetime as dt, json, sys
from pathlib import Path
from mlops_recipes.settings import Settings
from mlops_recipes.stages import batch_score
from mlops_recipes.views import feature_services
end = dt.datetime.fromisoformat(sys.argv[1])
summary = batch_score.run(Settings(), output=Path("scored.parquet"), start=end - dt.timedelta(days=1), end=end)
print(json.dumps({"summary": summary, "services": list(feature_services())}))
"""


def test_the_champion_of_the_old_service_still_scores_with_the_new_view_declared(extended: Any) -> None:
    client = extended.mlflow_client()
    champion = client.get_model_version_by_alias("fraud-detector", "champion")
    assert champion.tags["feature_service"] == extended.old_service
    validated = pd.read_parquet(extended.root / "data/validated/transactions.parquet", columns=["event_timestamp"])
    end = validated["event_timestamp"].max() + pd.Timedelta(seconds=1)

    printed = json.loads(extended.run("python", "-c", BATCH_SCORE, end.isoformat()).stdout.splitlines()[-1])

    assert printed["services"] == [extended.old_service, extended.new_service]  # the copy's package, new file in
    assert printed["summary"]["model_version"] == str(champion.version)
    scored = pd.read_parquet(extended.root / "scored.parquet")
    assert len(scored) == printed["summary"]["rows"] > 0
    assert scored["fraud_probability"].between(0, 1).all()
