"""Great Expectations (GX Core) validation of SQL batches, returned as plain dataclasses.

No Dagster here: a ``Suite`` is a SQL query (the batch, usually a recent window) and a tuple of
``Expect`` (a GX expectation type and its arguments, so suites can be declared and unit-tested
without importing GX); ``run_suites`` validates them in one ephemeral GX context and
``summarize`` turns a GX validation result into a ``SuiteOutcome``. GX is imported only when a
validation runs: it takes seconds, which loading the code location should not pay.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

DATASOURCE = "hub"
# GX's SUMMARY format: counts plus the first unexpected values, enough to act on in Dagit.
RESULT_FORMAT = "SUMMARY"
EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class Expect:
    """One GX expectation: ``type`` as in GX (``expect_column_values_to_be_between``)."""

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return describe(self.type, self.kwargs)


def between(
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    *,
    mostly: float | None = None,
) -> Expect:
    """Every non-null value of ``column`` in [min_value, max_value] (either bound optional)."""
    kwargs: dict[str, Any] = {"column": column, "min_value": min_value, "max_value": max_value}
    if mostly is not None:
        kwargs["mostly"] = mostly
    return Expect("expect_column_values_to_be_between", kwargs)


def in_set(column: str, values: Sequence[str]) -> Expect:
    """Every non-null value of ``column`` is one of ``values``."""
    kwargs = {"column": column, "value_set": list(values)}
    return Expect("expect_column_values_to_be_in_set", kwargs)


def not_null(column: str, *, mostly: float | None = None) -> Expect:
    """``column`` is not null (in at least the share ``mostly`` of rows: a null-rate bound)."""
    kwargs: dict[str, Any] = {"column": column}
    if mostly is not None:
        kwargs["mostly"] = mostly
    return Expect("expect_column_values_to_not_be_null", kwargs)


def max_between(
    column: str, min_value: float | None = None, max_value: float | None = None
) -> Expect:
    """The maximum of ``column`` in [min_value, max_value]; GX reports it as observed value."""
    return Expect(
        "expect_column_max_to_be_between",
        {"column": column, "min_value": min_value, "max_value": max_value},
    )


def pair_equal(column_a: str, column_b: str) -> Expect:
    """``column_a`` = ``column_b`` on every row."""
    return Expect(
        "expect_column_pair_values_to_be_equal", {"column_A": column_a, "column_B": column_b}
    )


@dataclass(frozen=True)
class Suite:
    """A batch (``query``, a SQL select) and what it must satisfy. ``name`` is unique per run."""

    name: str
    query: str
    expectations: tuple[Expect, ...]


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result. ``observed`` is a one-line summary for people."""

    expectation: str
    success: bool
    observed: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    """A suite's result: success only when every expectation succeeded."""

    suite: str
    success: bool
    rows: int | None
    expectations: tuple[ExpectationOutcome, ...]

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(e for e in self.expectations if not e.success)


def _bound(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def describe(type_: str, kwargs: Mapping[str, Any]) -> str:
    """A short human label of an expectation (``latency_ms >= 0``, ``cost_usd not null >= 95%``)."""
    column = kwargs.get("column", "")
    mostly = kwargs.get("mostly")
    share = f" in >= {mostly:.0%} of rows" if mostly not in (None, 1, 1.0) else ""
    if type_ in ("expect_column_values_to_be_between", "expect_column_max_to_be_between"):
        if type_ == "expect_column_max_to_be_between":
            column = f"max({column})"
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            text = f"{_bound(low)} <= {column} <= {_bound(high)}"
        elif low is not None:
            text = f"{column} >= {_bound(low)}"
        else:
            text = f"{column} <= {_bound(high)}"
        return text + share
    if type_ == "expect_column_values_to_be_in_set":
        return f"{column} in {{{', '.join(map(str, kwargs.get('value_set', [])))}}}" + share
    if type_ == "expect_column_values_to_not_be_null":
        return f"{column} not null" + share
    if type_ == "expect_column_pair_values_to_be_equal":
        return f"{kwargs.get('column_A')} = {kwargs.get('column_B')}"
    arguments = ", ".join(
        f"{k}={v}" for k, v in sorted(kwargs.items()) if k not in ("batch_id", "result_format")
    )
    return f"{type_}({arguments})"


def _observed(type_: str, result: Mapping[str, Any]) -> str:
    if "observed_value" in result:
        return str(result["observed_value"])
    count = result.get("unexpected_count")
    if count is None:
        return "no result"
    total = result.get("element_count")
    percent = result.get("unexpected_percent")
    text = f"{count:,} unexpected"
    if total is not None:
        text += f" of {total:,}"
    if percent is not None and not (isinstance(percent, float) and math.isnan(percent)):
        text += f" ({percent:.3g}%)"
    examples = result.get("partial_unexpected_list") or []
    # The unexpected values of a null check are all None: nothing to show.
    if count and examples and type_ != "expect_column_values_to_not_be_null":
        text += f", e.g. {examples[:EXAMPLES_SHOWN]}"
    return text


def summarize(suite: str, result: Mapping[str, Any]) -> SuiteOutcome:
    """Turn a GX validation result (``ExpectationSuiteValidationResult.to_json_dict()``) into a
    ``SuiteOutcome``.

    An expectation GX could not evaluate (it caught an exception: a missing column, a SQL error)
    counts as failed, with the error as its observed value, never as a pass.
    """
    outcomes: list[ExpectationOutcome] = []
    rows: int | None = None
    for item in result.get("results", []):
        config = item.get("expectation_config", {})
        detail = item.get("result") or {}
        exception = item.get("exception_info") or {}
        error = exception.get("exception_message") if exception.get("raised_exception") else None
        if rows is None and detail.get("element_count") is not None:
            rows = int(detail["element_count"])
        percent = detail.get("unexpected_percent")
        type_ = config.get("type", "?")
        outcomes.append(
            ExpectationOutcome(
                expectation=describe(type_, config.get("kwargs", {})),
                success=bool(item.get("success")) and error is None,
                observed=f"error: {error}" if error else _observed(type_, detail),
                unexpected_count=detail.get("unexpected_count"),
                unexpected_percent=None if percent is None else float(percent),
                error=error,
            )
        )
    success = bool(result.get("success")) and all(o.success for o in outcomes)
    return SuiteOutcome(suite=suite, success=success, rows=rows, expectations=tuple(outcomes))


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy (psycopg2) URL GX connects with, for a hub ``postgresql://`` URL or libpq
    keyword string; parsed by psycopg like ``HubResource.connect`` so both reach one server."""
    params = {k: str(v) for k, v in conninfo_to_dict(database_url).items()}
    port = params.pop("port", None)
    host = params.pop("host", None)
    if host and host.startswith("/"):
        # A Unix-socket directory cannot be the URL's host part; libpq takes it as a parameter.
        params["host"], host = host, None
    url = URL.create(
        "postgresql+psycopg2",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=host,
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        query=dict(sorted(params.items())),
    )
    return url.render_as_string(hide_password=False)


def run_suites(database_url: str, suites: Sequence[Suite]) -> list[SuiteOutcome]:
    """Validate each suite's batch with GX against ``database_url``, in order.

    Args:
        database_url: the hub database (``postgresql://`` URL).
        suites: suites with unique names.

    Returns:
        One ``SuiteOutcome`` per suite, in the order given.
    """
    if not suites:
        return []
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    context = gx.get_context(mode="ephemeral")
    # tqdm bars would fill the Dagster step's stderr with carriage-return noise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_postgres(
        DATASOURCE, connection_string=sqlalchemy_url(database_url)
    )
    outcomes = []
    for suite in suites:
        # GX takes only queries that start with SELECT; suites may start with a CTE.
        query = f"select * from (\n{suite.query.strip()}\n) as batch"  # noqa: S608
        batch = source.add_query_asset(suite.name, query=query)
        gx_suite = context.suites.add(
            gx.ExpectationSuite(
                name=suite.name,
                expectations=[
                    ExpectationConfiguration(type=e.type, kwargs=dict(e.kwargs)).to_domain_obj()
                    for e in suite.expectations
                ],
            )
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=suite.name,
                data=batch.add_batch_definition_whole_table("window"),
                suite=gx_suite,
            )
        )
        result = validation.run(result_format=RESULT_FORMAT)
        outcomes.append(summarize(suite.name, result.to_json_dict()))
    return outcomes
