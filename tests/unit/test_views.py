"""views/: feature views declared one file each; their order, the versioned services, and the tables they compute.

The composition rules are pure functions of spec lists, tested on specs built here; the package's own views are
checked through the same functions (discovery only finds them). A fake extra view stands for a user's new file:
added with a later ``since`` it makes a new service and leaves the earlier one exactly as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_recipes import views
from mlops_recipes.contract import EVENT_TIME, MERCHANT, Contract, demo_contract
from mlops_recipes.core.request_features import STORED_FEATURES, model_features, request_features, stored_features
from mlops_recipes.errors import ReportedError
from mlops_recipes.model_inputs import online_matrix
from mlops_recipes.params import FeatureParams
from mlops_recipes.views import FeatureViewError, FeatureViewSpec, StoredFeature, UnknownFeatureService

pytestmark = pytest.mark.unit

DEMO = demo_contract()
NO_ACCOUNT_DATES = DEMO.model_copy(update={"columns": DEMO.columns.model_copy(update={"account_created": None})})


def _table(transactions: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
    return transactions[[MERCHANT, EVENT_TIME]].assign(x=1.0)


def spec(name: str, since: str, *features: str, entity: Any = "merchant") -> FeatureViewSpec:
    return FeatureViewSpec(
        name=name,
        entity=entity,
        features=tuple(StoredFeature(f, "float64") for f in features or (f"{name}_x",)),
        ttl=dt.timedelta(days=1),
        refresh="daily",
        compute=_table,
        description=name,
        since=since,
    )


def _next_version(service: str) -> str:
    """The service after ``service`` (``x_v1`` -> ``x_v2``): the template's own name may be renamed (Copier)."""
    stem = service.rstrip("0123456789")
    return f"{stem}{int(service[len(stem) :] or 0) + 1}"


# ---------------------------------------------------------------- order and composition (pure)


def test_services_sort_naturally_digits_as_numbers() -> None:
    assert sorted(["m_v10", "m_v2", "m_v1"], key=views.service_key) == ["m_v1", "m_v2", "m_v10"]
    assert views.service_key("m_v2") < views.service_key("m_v10") < views.service_key("n_v1")


def test_views_are_ordered_by_service_then_name_whatever_their_declaration_order() -> None:
    ordered = views.arrange([spec("b", "m_v10"), spec("z", "m_v1"), spec("c", "m_v2"), spec("a", "m_v1")])
    assert [view.name for view in ordered] == ["a", "z", "c", "b"]


def test_each_service_reads_every_view_since_at_or_before_it() -> None:
    ordered = views.arrange([spec("a", "m_v1"), spec("b", "m_v1"), spec("c", "m_v2"), spec("d", "m_v10")])
    services = views.compose_services(ordered)

    assert {name: [v.name for v in read] for name, read in services.items()} == {
        "m_v1": ["a", "b"],
        "m_v2": ["a", "b", "c"],
        "m_v10": ["a", "b", "c", "d"],
    }


def test_a_view_added_with_a_later_since_leaves_the_earlier_service_as_it_was() -> None:
    before = views.compose_services(views.arrange([spec("b", "m_v1"), spec("a", "m_v1")]))
    after = views.compose_services(views.arrange([spec("b", "m_v1"), spec("new", "m_v2"), spec("a", "m_v1")]))

    assert after["m_v1"] == before["m_v1"]
    assert after["m_v2"][: len(before["m_v1"])] == before["m_v1"]  # the new service starts with the old one


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([spec("a", "m_v1"), spec("a", "m_v2", "other")], "feature views declared twice: \\['a'\\]"),
        ([spec("a", "m_v1", "x"), spec("b", "m_v2", "x")], "feature 'x' is declared by two views: a, b"),
    ],
)
def test_views_that_collide_are_refused(specs: list[FeatureViewSpec], message: str) -> None:
    with pytest.raises(FeatureViewError, match=message):
        views.arrange(specs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad-Name"}, "lower-case letters"),
        ({"entity": "card"}, "entity must be one of"),
        ({"refresh": "hourly"}, "refresh must be one of"),
        ({"features": ()}, "declares no feature"),
        ({"features": (StoredFeature("x", "float64"), StoredFeature("x", "int64"))}, "declared twice: \\['x'\\]"),
        ({"ttl": dt.timedelta(0)}, "ttl must be positive"),
        ({"since": "v 2"}, "since must be a feature service name"),
    ],
)
def test_a_bad_spec_is_refused_with_its_reason(change: dict[str, Any], message: str) -> None:
    fields = {
        "name": "a",
        "entity": "merchant",
        "features": (StoredFeature("x", "float64"),),
        "ttl": dt.timedelta(days=1),
        "refresh": "daily",
        "compute": _table,
        "description": "",
        "since": "m_v1",
    }
    with pytest.raises(FeatureViewError, match=message):
        FeatureViewSpec(**(fields | change))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("X", "float64"), "lower-case letters"),
        (("x", "float32"), "dtype must be one of"),
        (("x", "float64", True, "channel"), "needs must be an optional contract role"),
    ],
)
def test_a_bad_feature_is_refused_with_its_reason(arguments: tuple[Any, ...], message: str) -> None:
    with pytest.raises(FeatureViewError, match=message):
        StoredFeature(*arguments)


def test_features_needing_an_absent_contract_column_are_left_out() -> None:
    view = FeatureViewSpec(
        name="a",
        entity="customer",
        features=(StoredFeature("x", "float64"), StoredFeature("opened", "float64", needs="account_created")),
        ttl=dt.timedelta(days=1),
        refresh="daily",
        compute=_table,
        description="",
        since="m_v1",
    )
    assert [f.name for f in views.view_features(view, DEMO)] == ["x", "opened"]
    assert [f.name for f in views.view_features(view, NO_ACCOUNT_DATES)] == ["x"]


# ---------------------------------------------------------------- discovery


def _package(root: Path, name: str, modules: dict[str, str]) -> str:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    header = "from datetime import timedelta\nfrom mlops_recipes.views import FeatureViewSpec, StoredFeature\n"
    for module, body in modules.items():
        (package / f"{module}.py").write_text(header + textwrap.dedent(body))
    return name


def _view_source(name: str) -> str:
    return f"""
    VIEW = FeatureViewSpec(
        name="{name}", entity="merchant", features=(StoredFeature("{name}_x", "float64"),), ttl=timedelta(days=1),
        refresh="daily", compute=lambda t, p: t, description="", since="m_v1",
    )
    """


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # the packages made here are the tests' own
        del sys.modules[name]


def test_discovery_finds_every_module_but_private_ones_in_name_order(on_path: Path) -> None:
    package = _package(
        on_path, "views_found", {"zeta": _view_source("zeta"), "alpha": _view_source("alpha"), "_helpers": "X = 1\n"}
    )
    assert [view.name for view in views.discover(package)] == ["alpha", "zeta"]


def test_a_module_without_a_view_is_a_clear_error(on_path: Path) -> None:
    package = _package(on_path, "views_missing", {"alpha": _view_source("alpha"), "stray": "VIEW = 'nope'\n"})
    with pytest.raises(FeatureViewError, match=r"views_missing\.stray .* must define VIEW = FeatureViewSpec.*str"):
        views.discover(package)


def test_the_package_declares_the_demo_views_in_signature_order() -> None:
    declared = views.feature_views()
    (v1,) = views.feature_services()  # one service until a view declares a later one

    assert [view.name for view in declared] == ["customer_stats", "merchant_stats"]
    assert views.feature_services()[v1] == declared
    assert tuple(name for view in declared for name in view.names) == STORED_FEATURES
    assert STORED_FEATURES[:2] == ("cust_txn_count_1h", "cust_txn_count_24h")
    assert STORED_FEATURES[-3:] == ("merch_txn_count_7d", "merch_fraud_rate_7d", "merch_amount_mean_7d")


def test_an_undeclared_service_is_a_reported_error_naming_the_declared_ones() -> None:
    (v1,) = views.feature_services()
    with pytest.raises(UnknownFeatureService, match=f"'nope' is not declared; the declared ones are {v1}") as error:
        stored_features(DEMO, "nope")
    assert isinstance(error.value, ReportedError)


# ---------------------------------------------------------------- every view's table (any view a user adds)


@pytest.mark.parametrize("contract", [DEMO, NO_ACCOUNT_DATES], ids=["demo", "no-account-dates"])
@pytest.mark.parametrize("view", views.feature_views(), ids=lambda view: view.name)
def test_every_view_computes_exactly_its_declared_columns_and_types(
    view: FeatureViewSpec, contract: Contract, small_generated: pd.DataFrame
) -> None:
    transactions = (
        small_generated if contract.has_account_created else small_generated.drop(columns="account_created_at")
    )
    table = view.compute(transactions.copy(), FeatureParams())
    features = views.view_features(view, contract)

    assert list(table.columns) == [view.join_key, EVENT_TIME, *(f.name for f in features)]
    assert {f.name: str(table[f.name].dtype) for f in features} == {f.name: f.dtype for f in features}
    assert str(table[EVENT_TIME].dtype) == "datetime64[ns, UTC]"
    assert len(table) > 0
    assert views.compute_table(view, transactions.copy(), FeatureParams(), contract) is not None


def test_a_table_that_does_not_match_its_spec_is_a_clear_error(small_generated: pd.DataFrame) -> None:
    def swapped(transactions: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
        return transactions[[EVENT_TIME, MERCHANT]].assign(x=1.0)

    def integers(transactions: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
        return transactions[[MERCHANT, EVENT_TIME]].assign(x=1)

    view = spec("a", "m_v1", "x")
    with pytest.raises(FeatureViewError, match="compute returned the columns"):
        views.compute_table(dataclasses.replace(view, compute=swapped), small_generated, FeatureParams(), DEMO)
    with pytest.raises(FeatureViewError, match=r"another type than declared \{'x': 'float64'\}: \{'x': 'int64'\}"):
        views.compute_table(dataclasses.replace(view, compute=integers), small_generated, FeatureParams(), DEMO)


# ---------------------------------------------------------------- a new view in a new service, end to end (pure)

NEW_FEATURES = ("merch_night_share_7d", "merch_amount_max_7d")


@pytest.fixture
def with_a_new_view(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """The package's views plus one more declared ``since`` the next service: (old service, new service)."""
    (v1,) = views.feature_services()
    v2 = _next_version(v1)
    declared = views.discover()
    extra = spec("merchant_night", v2, *NEW_FEATURES)
    monkeypatch.setattr(views, "discover", lambda package=views.__name__: (*declared, extra))
    views.forget()
    yield v1, v2
    monkeypatch.undo()
    views.forget()


def test_a_new_service_adds_the_view_after_the_old_features_and_the_old_service_keeps_its_inputs(
    with_a_new_view: tuple[str, str],
) -> None:
    v1, v2 = with_a_new_view
    old = model_features(DEMO, v1)
    new = model_features(DEMO, v2)
    stored_v1 = stored_features(DEMO, v1)

    assert stored_v1 == STORED_FEATURES  # v1 as before the new file
    assert stored_features(DEMO, v2) == (*stored_v1, *NEW_FEATURES)
    assert [name for name in new if name not in NEW_FEATURES] == list(old)
    # The new features come right after the stored ones, before the request-time features.
    assert new.index(NEW_FEATURES[0]) == old.index("amount")
    assert model_features(DEMO) == new  # no service: every view
    assert views.entity_features(DEMO, v2)["merchant"][-2:] == NEW_FEATURES


def _columns(names: tuple[str, ...]) -> dict[str, Any]:
    columns: dict[str, Any] = {name: np.array([2.0]) for name in names}
    return columns | {"amount": np.array([10.0]), EVENT_TIME: np.array([0.0]), "channel": np.array(["pos"])}


def test_a_model_of_the_old_service_is_served_from_its_features_alone(with_a_new_view: tuple[str, str]) -> None:
    v1, v2 = with_a_new_view
    only_v1 = _columns(stored_features(DEMO, v1))  # what the online lookup of v1 returns

    assert list(request_features(only_v1, DEMO, v1)) == list(model_features(DEMO, v1))
    with pytest.raises(KeyError, match=NEW_FEATURES[0]):
        request_features(only_v1, DEMO, v2)
    new = request_features(_columns(stored_features(DEMO, v2)), DEMO, v2)
    assert new[NEW_FEATURES[1]].tolist() == [2.0]  # stored model inputs pass through unchanged

    request = SimpleNamespace(amount=10.0, channel="pos", event_timestamp=None)
    stored = {name: [2.0] for name in stored_features(DEMO, v1)}
    matrix = online_matrix(stored, [request], model_features(DEMO, v1), DEMO, now=0.0, service=v1)
    assert matrix.shape == (1, len(model_features(DEMO, v1)))
    with pytest.raises(KeyError):
        online_matrix(stored, [request], model_features(DEMO, v1), DEMO, now=0.0)  # every view's features
