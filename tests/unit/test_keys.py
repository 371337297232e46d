"""Series keys built from ids that contain separators never collide."""

from __future__ import annotations

import pytest

from ml.features import SeriesKey
from ml.keys import RouteKey, decode_key, encode_key

AWKWARD = [
    ("acme/app", "openai", "gpt-4o"),
    ("acme", "app/openai", "gpt-4o"),
    ("acme", "app", "openai/gpt-4o"),
    ('a"b', "c,d", "e\\f"),
    ('["x"', '"]', ""),
    ("ümlaut", "tab\tsep", "new\nline"),
]


def test_ids_with_separators_give_distinct_keys_that_round_trip() -> None:
    # "acme/app"+"openai"+"gpt-4o" and "acme"+"app"+"openai/gpt-4o" were one series.
    encoded = [RouteKey(*parts).encode() for parts in AWKWARD]
    assert len(set(encoded)) == len(AWKWARD)
    for parts, text in zip(AWKWARD, encoded, strict=True):
        assert RouteKey.decode(text) == RouteKey(*parts)
        assert decode_key(text) == parts


def test_series_key_labels_do_not_collide() -> None:
    labels = {SeriesKey(*parts, "request_count").label() for parts in AWKWARD}
    assert len(labels) == len(AWKWARD)


@pytest.mark.parametrize("text", ["acme/app/gpt-4o", "[1, 2, 3]", '["a", "b"]'])
def test_a_string_that_is_not_a_three_part_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="key"):
        RouteKey.decode(text)


def test_parts_must_be_strings() -> None:
    with pytest.raises(TypeError):
        encode_key("a", None)  # type: ignore[arg-type]


def test_tenant_totals_keep_tenants_whose_ids_contain_separators_apart() -> None:
    # Tenant totals split the route id at "/": "acme/eu"'s traffic was added to "acme".
    import pandas as pd

    from ml.evaluation.incidents.forecast import request_rate_series

    index = pd.date_range("2026-01-05", periods=4, freq="h", tz="UTC")
    train, test = {}, {}
    for tenant, app, model, level in (
        ("acme/eu", "chat", "m", 10.0),
        ("acme", "eu/chat", "m", 1.0),
    ):
        key = SeriesKey(tenant, app, model, "request_count")
        train[key] = pd.Series(level, index=index[:2])
        test[key] = pd.Series(level, index=index[2:])
    tenants, routes = request_rate_series(train, test)

    assert sorted(tenants) == ["acme", "acme/eu"]
    assert tenants["acme"].sum() == 4.0
    assert len(routes) == 2
