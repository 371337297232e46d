"""Great Expectations suites as Dagster asset checks: one check per suite, results in Dagit.

Two check definitions, each running its selected suites in one GX context (importing GX costs
seconds, once per step rather than once per check): ``raw_quality_checks`` on the raw tables,
which runs before the dbt build of the same job (a failed blocking raw check keeps the marts from
being built), and ``mart_quality_checks`` on the marts, after it.
"""

from collections.abc import Iterable, Iterator

import dagster as dg

from assets.resources import HubResource
from llmhub.quality.suites import MART_CHECKS, RAW_CHECKS, WINDOW_HOURS, QualityCheck
from llmhub.quality.validation import SuiteOutcome, run_suites

EXPECTATIONS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("expectation", "string"),
        dg.TableColumn("success", "bool"),
        dg.TableColumn("observed", "string"),
    ]
)


def check_key(check: QualityCheck) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(list(check.asset)), check.name)


def check_spec(check: QualityCheck) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        check.name,
        asset=dg.AssetKey(list(check.asset)),
        description=check.description,
        blocking=check.blocking,
    )


def check_result(check: QualityCheck, outcome: SuiteOutcome) -> dg.AssetCheckResult:
    """The Dagster result of ``check`` from its suite's outcome: every expectation's success and
    observed value as a table, the failed ones spelled out."""
    failed = outcome.failed
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(list(check.asset)),
        check_name=check.name,
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.WARN if check.warn else dg.AssetCheckSeverity.ERROR,
        metadata={
            "expectations": dg.MetadataValue.table(
                records=[
                    dg.TableRecord(
                        {"expectation": e.expectation, "success": e.success, "observed": e.observed}
                    )
                    for e in outcome.expectations
                ],
                schema=EXPECTATIONS_SCHEMA,
            ),
            "expectations_evaluated": len(outcome.expectations),
            "expectations_failed": len(failed),
            "failed_expectations": dg.MetadataValue.md(
                "\n".join(f"- `{e.expectation}`: {e.observed}" for e in failed) or "none"
            ),
            "rows_validated": -1 if outcome.rows is None else outcome.rows,
            "gx_suite": outcome.suite,
            "window_hours": WINDOW_HOURS,
        },
    )


def _run(
    context: dg.AssetCheckExecutionContext, hub: HubResource, checks: Iterable[QualityCheck]
) -> Iterator[dg.AssetCheckResult]:
    selected = [c for c in checks if check_key(c) in context.selected_asset_check_keys]
    outcomes = run_suites(hub.database_url, [c.suite for c in selected])
    for check, outcome in zip(selected, outcomes, strict=True):
        if not outcome.success:
            context.log.warning(f"{outcome.suite}: {len(outcome.failed)} expectation(s) failed")
        yield check_result(check, outcome)


@dg.multi_asset_check(
    specs=[check_spec(c) for c in RAW_CHECKS], can_subset=True, name="raw_quality_checks"
)
def raw_quality_checks(
    context: dg.AssetCheckExecutionContext, hub: HubResource
) -> Iterator[dg.AssetCheckResult]:
    """Value ranges, accepted values and null rates of the raw tables' recent window."""
    yield from _run(context, hub, RAW_CHECKS)


@dg.multi_asset_check(
    specs=[check_spec(c) for c in MART_CHECKS], can_subset=True, name="mart_quality_checks"
)
def mart_quality_checks(
    context: dg.AssetCheckExecutionContext, hub: HubResource
) -> Iterator[dg.AssetCheckResult]:
    """Value ranges, null rates, freshness against raw and request counts against raw of the
    marts' recent buckets."""
    yield from _run(context, hub, MART_CHECKS)
