"""The Great Expectations core (labels, result summaries, URLs), the suites, and the checks run
with a fake validator."""

import re
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from assets.quality import mart_quality_checks, raw_quality_checks
from assets.quality.checks import check_result
from assets.resources import HubResource
from llmhub.quality.suites import MART_CHECKS, RAW_CHECKS, QualityCheck
from llmhub.quality.validation import (
    ExpectationOutcome,
    Suite,
    SuiteOutcome,
    between,
    describe,
    in_set,
    max_between,
    not_null,
    pair_equal,
    sqlalchemy_url,
    summarize,
)

ALL_CHECKS = RAW_CHECKS + MART_CHECKS


@pytest.mark.parametrize(
    ("expect", "label"),
    [
        (between("latency_ms", 0), "latency_ms >= 0"),
        (between("error_rate", 0, 1), "0 <= error_rate <= 1"),
        (between("x", max_value=2.5), "x <= 2.5"),
        (in_set("status", ["ok", "error"]), "status in {ok, error}"),
        (not_null("tenant_id"), "tenant_id not null"),
        (not_null("cost_usd", mostly=0.95), "cost_usd not null in >= 95% of rows"),
        (pair_equal("raw_count", "mart_count"), "raw_count = mart_count"),
        (max_between("lag_hours", max_value=2), "max(lag_hours) <= 2"),
    ],
)
def test_expectations_have_readable_labels(expect: Any, label: str) -> None:
    assert expect.label == label


def test_an_unknown_expectation_type_is_still_labelled() -> None:
    assert describe("expect_table_row_count_to_be_between", {"min_value": 1}) == (
        "expect_table_row_count_to_be_between(min_value=1)"
    )


def _result(config: dict[str, Any], success: bool, detail: dict[str, Any], **extra: Any) -> dict:
    return {
        "success": success,
        "expectation_config": config,
        "result": detail,
        "exception_info": {"raised_exception": False, "exception_message": None},
        **extra,
    }


BETWEEN = {
    "type": "expect_column_values_to_be_between",
    "kwargs": {"column": "latency_ms", "min_value": 0},
}
IN_SET = {
    "type": "expect_column_values_to_be_in_set",
    "kwargs": {"column": "severity", "value_set": ["info", "low"]},
}
MAX = {"type": "expect_column_max_to_be_between", "kwargs": {"column": "lag_hours", "max_value": 2}}


def test_summarize_a_passing_validation() -> None:
    outcome = summarize(
        "raw.llm_requests.valid_values",
        {
            "success": True,
            "results": [
                _result(
                    BETWEEN,
                    True,
                    {"element_count": 1200, "unexpected_count": 0, "unexpected_percent": 0.0},
                ),
                _result(MAX, True, {"observed_value": 0.0}),
            ],
        },
    )

    assert outcome.success
    assert outcome.rows == 1200
    assert outcome.failed == ()
    assert [e.observed for e in outcome.expectations] == ["0 unexpected of 1,200 (0%)", "0.0"]


def test_summarize_shows_what_was_unexpected() -> None:
    outcome = summarize(
        "s",
        {
            "success": False,
            "results": [
                _result(
                    IN_SET,
                    False,
                    {
                        "element_count": 400,
                        "unexpected_count": 3,
                        "unexpected_percent": 0.75,
                        "partial_unexpected_list": ["urgent", "urgent", "medium"],
                    },
                )
            ],
        },
    )

    [failed] = outcome.failed
    assert not outcome.success
    assert failed.expectation == "severity in {info, low}"
    assert failed.observed == "3 unexpected of 400 (0.75%), e.g. ['urgent', 'urgent', 'medium']"
    assert (failed.unexpected_count, failed.unexpected_percent) == (3, 0.75)


def test_an_expectation_gx_could_not_evaluate_fails() -> None:
    # GX catches the error and may still say success; a missing column must never pass.
    outcome = summarize(
        "s",
        {
            "success": True,
            "results": [
                _result(
                    BETWEEN,
                    True,
                    {},
                    exception_info={
                        "raised_exception": True,
                        "exception_message": 'column "latency_ms" does not exist',
                    },
                )
            ],
        },
    )

    assert not outcome.success
    assert outcome.failed[0].observed == 'error: column "latency_ms" does not exist'


def test_an_empty_window_passes_with_no_rows() -> None:
    outcome = summarize("s", {"success": True, "results": []})

    assert (outcome.success, outcome.rows) == (True, None)


@pytest.mark.parametrize(
    ("url", "password", "host", "query"),
    [
        ("postgresql://postgres@127.0.0.1:5433/llmhub", None, "127.0.0.1", {}),
        (
            "postgresql://u:p%40ss%2Fw@db:6432/hub?sslmode=require",
            "p@ss/w",
            "db",
            {"sslmode": "require"},
        ),
        (
            "postgresql://u@/hub?host=/var/run/postgresql",
            None,
            None,
            {"host": "/var/run/postgresql"},
        ),
    ],
)
def test_sqlalchemy_url_reaches_the_same_server(
    url: str, password: str | None, host: str | None, query: dict[str, str]
) -> None:
    parsed = make_url(sqlalchemy_url(url))

    assert parsed.drivername == "postgresql+psycopg2"
    assert (parsed.password, parsed.host, dict(parsed.query)) == (password, host, query)


def test_suite_names_are_unique_and_check_names_snake_case() -> None:
    names = [c.suite.name for c in ALL_CHECKS]

    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z_]*", c.name) for c in ALL_CHECKS)
    assert len({(c.asset, c.name) for c in ALL_CHECKS}) == len(ALL_CHECKS)


def test_only_impossible_values_on_the_ml_inputs_block() -> None:
    blocking = {(c.asset, c.name) for c in ALL_CHECKS if c.blocking}

    assert blocking == {
        (("raw", "llm_requests"), "valid_values"),
        (("marts", "fct_llm_requests_hourly"), "valid_values"),
    }
    assert not any(c.blocking and c.warn for c in ALL_CHECKS)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.suite.name)
def test_every_suite_reads_a_bounded_window(check: QualityCheck) -> None:
    # Full scans of raw tables on 10M rows would make every check cost minutes.
    query = check.suite.query
    if check.asset[0] == "raw":
        assert "occurred_at >= now() - interval" in query
    assert check.suite.expectations


def test_check_result_lists_every_expectation() -> None:
    check = RAW_CHECKS[0]
    outcome = SuiteOutcome(
        suite=check.suite.name,
        success=False,
        rows=10,
        expectations=(
            ExpectationOutcome("latency_ms >= 0", True, "0 unexpected of 10 (0%)"),
            ExpectationOutcome("severity in {info}", False, "1 unexpected of 10 (10%)"),
        ),
    )

    result = check_result(check, outcome)

    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    records = result.metadata["expectations"].value.records
    assert [(r.data["expectation"], r.data["success"]) for r in records] == [
        ("latency_ms >= 0", True),
        ("severity in {info}", False),
    ]
    assert result.metadata["expectations_failed"].value == 1
    assert "severity in {info}" in result.metadata["failed_expectations"].value


def test_warn_checks_fail_with_warn_severity() -> None:
    check = next(c for c in RAW_CHECKS if c.warn)

    result = check_result(check, SuiteOutcome(check.suite.name, False, 0, ()))

    assert result.severity == dg.AssetCheckSeverity.WARN


def test_a_check_run_validates_only_the_selected_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_run_suites(database_url: str, suites: Sequence[Suite]) -> list[SuiteOutcome]:
        calls.append((database_url, [s.name for s in suites]))
        return [SuiteOutcome(s.name, s.name.endswith("null_rates"), 5, ()) for s in suites]

    monkeypatch.setattr("assets.quality.checks.run_suites", fake_run_suites)
    requests = dg.AssetKey(["raw", "llm_requests"])

    result = dg.materialize(
        [raw_quality_checks, mart_quality_checks],
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(requests, "valid_values"), dg.AssetCheckKey(requests, "null_rates")
        ),
        resources={"hub": HubResource(database_url="postgresql://u@h/db", kafka_bootstrap="k:1")},
        raise_on_error=False,
    )

    assert calls == [
        ("postgresql://u@h/db", ["raw.llm_requests.valid_values", "raw.llm_requests.null_rates"])
    ]
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"valid_values": False, "null_rates": True}
    # valid_values blocks: the failed evaluation fails the step.
    assert not result.success
