"""The hand-written protobuf bytes of the per-transaction writer equal Feast's ``Value`` serialisation."""

from __future__ import annotations

import math

from feast.protos.feast.types.Value_pb2 import Value
from hypothesis import given
from hypothesis import strategies as st

from mlops_recipes.io.feature_store import _value_bytes


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int64_values_are_feasts_bytes_and_text(number: int) -> None:
    proto = Value(int64_val=number)
    assert _value_bytes(number, integer=True) == (proto.SerializeToString(), str(proto.int64_val))


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_double_values_are_feasts_bytes_and_text(number: float) -> None:
    proto = Value(double_val=number)
    serialised, text = _value_bytes(number, integer=False)
    assert serialised == proto.SerializeToString()
    assert text == str(proto.double_val) or (math.isnan(number) and text == "nan")


def test_an_integer_feature_given_as_a_float_is_written_as_int64() -> None:
    # customer_row returns counts as int, but a row read back from JSON or a DataFrame may carry 3.0
    assert _value_bytes(3.0, integer=True) == (Value(int64_val=3).SerializeToString(), "3")
