"""The Great Expectations suites of the raw tables and the marts (run as Dagster asset checks).

Each suite validates a recent window only (``WINDOW_HOURS`` of raw events, the buckets of the last
two days, the last complete days), so a check costs the same on 10M rows as on 10k.

Blocking is reserved for values that cannot be right (a negative latency, an unknown status): they
would corrupt the request marts, the ML inputs, and waiting is better. Null rates and freshness
only warn: an outage legitimately empties latency percentiles, and the anomaly models must see it.
"""

from dataclasses import dataclass

from llmhub.quality.validation import (
    Expect,
    Suite,
    between,
    in_set,
    max_between,
    not_null,
    pair_equal,
)

WINDOW_HOURS = 48
COMPLETE_DAYS = 2
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("ok", "error", "rate_limited")
ACTIONS = ("blocked", "flagged", "redacted", "allowed")
COST_BASES = ("billed", "reported", "estimated")
CURRENCIES = ("USD",)
# The mart may trail raw by the hour being written when the build ran, and one more that started
# before the check: two hours behind means a build missed data.
MAX_HOURLY_LAG_HOURS = 2
MAX_DAILY_LAG_DAYS = 1
# Built once a day (01:30 UTC) from fct_llm_requests_daily, which always holds today.
MAX_COST_LAG_DAYS = 2

VALID_VALUES_CHECK = "valid_values"
NULL_RATES_CHECK = "null_rates"
FRESH_CHECK = "fresh"
COUNTS_MATCH_RAW_CHECK = "counts_match_raw"


@dataclass(frozen=True)
class QualityCheck:
    """A suite as the asset check ``name`` of asset ``asset`` (``(schema, table)``).

    ``blocking`` checks stop downstream assets of the same run when they fail; ``warn`` checks
    fail with WARN severity.
    """

    asset: tuple[str, str]
    name: str
    description: str
    suite: Suite
    blocking: bool = False
    warn: bool = False


def _select(columns: str, table: str, where: str) -> str:
    """A batch query; built from this module's constants only, never from input."""
    return f"select {columns} from {table} where {where}"  # noqa: S608


def _raw_window(table: str, columns: str) -> str:
    recent = f"occurred_at >= now() - interval '{WINDOW_HOURS} hours'"
    return _select(columns, f"raw.{table}", recent)


def _suite(asset: tuple[str, str], check: str, query: str, *expectations: Expect) -> Suite:
    return Suite(name=f"{asset[0]}.{asset[1]}.{check}", query=query, expectations=expectations)


LLM_REQUESTS = ("raw", "llm_requests")
SECURITY_ALERTS = ("raw", "security_alerts")
COST_RECORDS = ("raw", "cost_records")
POLICY_VIOLATIONS = ("raw", "policy_violations")
HOURLY = ("marts", "fct_llm_requests_hourly")
DAILY = ("marts", "fct_llm_requests_daily")
COST_DAILY = ("marts", "fct_llm_cost_daily")
SECURITY_DAILY = ("marts", "fct_security_alerts_daily")
POLICY_DAILY = ("marts", "fct_policy_violations_daily")

RAW_CHECKS: tuple[QualityCheck, ...] = (
    QualityCheck(
        LLM_REQUESTS,
        VALID_VALUES_CHECK,
        f"Great Expectations, last {WINDOW_HOURS} h of requests: latencies, tokens and cost are "
        "non-negative, status and severity are known values. Blocks the request marts.",
        _suite(
            LLM_REQUESTS,
            VALID_VALUES_CHECK,
            _raw_window(
                "llm_requests",
                "latency_ms, time_to_first_token_ms, input_tokens, output_tokens, "
                "cache_read_tokens, cost_usd, status, severity",
            ),
            between("latency_ms", 0),
            between("time_to_first_token_ms", 0),
            between("input_tokens", 0),
            between("output_tokens", 0),
            between("cache_read_tokens", 0),
            between("cost_usd", 0),
            in_set("status", STATUSES),
            in_set("severity", SEVERITIES),
        ),
        blocking=True,
    ),
    QualityCheck(
        LLM_REQUESTS,
        NULL_RATES_CHECK,
        f"Great Expectations, last {WINDOW_HOURS} h of requests: optional fields the marts "
        "aggregate are mostly present (reported cost, response model, time to first token).",
        _suite(
            LLM_REQUESTS,
            NULL_RATES_CHECK,
            _raw_window("llm_requests", "cost_usd, response_model, time_to_first_token_ms"),
            not_null("cost_usd", mostly=0.95),
            not_null("response_model", mostly=0.9),
            not_null("time_to_first_token_ms", mostly=0.5),
        ),
        warn=True,
    ),
    QualityCheck(
        SECURITY_ALERTS,
        VALID_VALUES_CHECK,
        f"Great Expectations, last {WINDOW_HOURS} h of alerts: known severity and action, "
        "confidence in [0, 1].",
        _suite(
            SECURITY_ALERTS,
            VALID_VALUES_CHECK,
            _raw_window("security_alerts", "severity, action_taken, confidence"),
            in_set("severity", SEVERITIES),
            in_set("action_taken", ACTIONS),
            between("confidence", 0, 1),
        ),
    ),
    QualityCheck(
        COST_RECORDS,
        VALID_VALUES_CHECK,
        f"Great Expectations, last {WINDOW_HOURS} h of billing records: non-negative cost, "
        "tokens and request counts; USD.",
        _suite(
            COST_RECORDS,
            VALID_VALUES_CHECK,
            _raw_window(
                "cost_records",
                "cost_usd, input_tokens, output_tokens, cache_read_tokens, request_count, "
                "currency, severity",
            ),
            between("cost_usd", 0),
            between("input_tokens", 0),
            between("output_tokens", 0),
            between("cache_read_tokens", 0),
            between("request_count", 0),
            in_set("currency", CURRENCIES),
            in_set("severity", SEVERITIES),
        ),
    ),
    QualityCheck(
        POLICY_VIOLATIONS,
        VALID_VALUES_CHECK,
        f"Great Expectations, last {WINDOW_HOURS} h of policy violations: known severity and "
        "action.",
        _suite(
            POLICY_VIOLATIONS,
            VALID_VALUES_CHECK,
            _raw_window("policy_violations", "severity, action_taken, policy_id"),
            in_set("severity", SEVERITIES),
            in_set("action_taken", ACTIONS),
            not_null("policy_id"),
        ),
    ),
)

_HOURLY_WINDOW = _select(
    "*",
    "marts.fct_llm_requests_hourly",
    f"request_hour_at >= date_trunc('hour', now()) - interval '{WINDOW_HOURS} hours'",
)
_RECENT_DAYS = f"(now() at time zone 'utc')::date - {COMPLETE_DAYS}"

# Built from module constants only, never from input.
_COUNTS_MATCH_RAW_QUERY = f"""
with days as (
    select ((now() at time zone 'utc')::date - n) as request_date
    from generate_series(1, {COMPLETE_DAYS}) as n
),
raw_days as (
    select (occurred_at at time zone 'utc')::date as request_date,
           count(*) as request_count
    from raw.llm_requests
    where occurred_at >= date_trunc('day', now(), 'utc')
            - interval '{COMPLETE_DAYS} days'
        and occurred_at < date_trunc('day', now(), 'utc')
    group by 1
),
mart_days as (
    select request_date, sum(request_count) as request_count
    from marts.fct_llm_requests_daily
    where request_date >= {_RECENT_DAYS}
        and request_date < (now() at time zone 'utc')::date
    group by 1
)
select
    days.request_date,
    coalesce(raw_days.request_count, 0)::bigint as raw_request_count,
    coalesce(mart_days.request_count, 0)::bigint as mart_request_count
from days
left join raw_days on raw_days.request_date = days.request_date
left join mart_days on mart_days.request_date = days.request_date
"""  # noqa: S608

MART_CHECKS: tuple[QualityCheck, ...] = (
    QualityCheck(
        HOURLY,
        VALID_VALUES_CHECK,
        f"Great Expectations, hour buckets of the last {WINDOW_HOURS} h: keys present, counts "
        "and rates in range, latencies, tokens and cost non-negative. Guards the ML inputs: "
        "blocks downstream assets.",
        _suite(
            HOURLY,
            VALID_VALUES_CHECK,
            _HOURLY_WINDOW,
            not_null("tenant_id"),
            not_null("asset_id"),
            not_null("provider"),
            not_null("request_model"),
            not_null("request_hour_at"),
            between("request_count", 1),
            between("success_count", 0),
            between("error_count", 0),
            between("rate_limited_count", 0),
            between("error_rate", 0, 1),
            between("rate_limited_rate", 0, 1),
            between("latency_avg_ms", 0),
            between("latency_p50_ms", 0),
            between("latency_p95_ms", 0),
            between("latency_p99_ms", 0),
            between("time_to_first_token_p50_ms", 0),
            between("output_tokens_per_second", 0),
            between("input_tokens", 0),
            between("output_tokens", 0),
            between("cost_usd", 0),
        ),
        blocking=True,
    ),
    QualityCheck(
        HOURLY,
        NULL_RATES_CHECK,
        f"Great Expectations, hour buckets of the last {WINDOW_HOURS} h: latency and time to "
        "first token percentiles are mostly present (null when a bucket had no success).",
        _suite(
            HOURLY,
            NULL_RATES_CHECK,
            _HOURLY_WINDOW,
            not_null("latency_p50_ms", mostly=0.95),
            not_null("time_to_first_token_p50_ms", mostly=0.5),
        ),
        warn=True,
    ),
    QualityCheck(
        HOURLY,
        FRESH_CHECK,
        f"The newest hour bucket is at most {MAX_HOURLY_LAG_HOURS} h behind the hour of the "
        "newest raw request (lag_hours; judged against raw, not the clock, so a quiet source "
        "does not fail it: raw.llm_requests has its own freshness check).",
        _suite(
            HOURLY,
            FRESH_CHECK,
            """
            with newest as (
                select
                    date_trunc('hour', (select max(occurred_at) from raw.llm_requests), 'utc')
                        as newest_event_hour_at,
                    (select max(request_hour_at) from marts.fct_llm_requests_hourly)
                        as newest_bucket_at
            )
            select
                coalesce(
                    extract(
                        epoch from newest_event_hour_at
                        - coalesce(newest_bucket_at, 'epoch'::timestamptz)
                    ) / 3600.0,
                    0
                ) as lag_hours
            from newest
            """,
            max_between("lag_hours", max_value=MAX_HOURLY_LAG_HOURS),
        ),
        warn=True,
    ),
    QualityCheck(
        DAILY,
        COUNTS_MATCH_RAW_CHECK,
        f"Over the last {COMPLETE_DAYS} complete UTC days, raw.llm_requests rows = the sum of "
        "request_count per day (nothing dropped, duplicated or left outside an incremental "
        "window; a mismatch needs a backfill of that day).",
        _suite(
            DAILY,
            COUNTS_MATCH_RAW_CHECK,
            _COUNTS_MATCH_RAW_QUERY,
            pair_equal("raw_request_count", "mart_request_count"),
        ),
    ),
    QualityCheck(
        DAILY,
        FRESH_CHECK,
        f"The newest day is at most {MAX_DAILY_LAG_DAYS} day behind the UTC day of the newest "
        "raw request (lag_days).",
        _suite(
            DAILY,
            FRESH_CHECK,
            """
            select coalesce(
                (select (max(occurred_at) at time zone 'utc')::date from raw.llm_requests)
                - coalesce(
                    (select max(request_date) from marts.fct_llm_requests_daily), 'epoch'::date
                ),
                0
            ) as lag_days
            """,
            max_between("lag_days", max_value=MAX_DAILY_LAG_DAYS),
        ),
        warn=True,
    ),
    QualityCheck(
        COST_DAILY,
        VALID_VALUES_CHECK,
        f"Great Expectations, usage days from {COMPLETE_DAYS} days ago: every cost figure is "
        "non-negative and cost_basis is billed, reported or estimated.",
        _suite(
            COST_DAILY,
            VALID_VALUES_CHECK,
            _select("*", "marts.fct_llm_cost_daily", f"usage_date >= {_RECENT_DAYS}"),
            between("estimated_cost_usd", 0),
            between("reported_cost_usd", 0),
            between("billed_cost_usd", 0),
            between("cost_usd", 0),
            between("month_to_date_cost_usd", 0),
            not_null("cost_basis"),
            in_set("cost_basis", COST_BASES),
        ),
    ),
    QualityCheck(
        COST_DAILY,
        FRESH_CHECK,
        f"The newest usage day is at most {MAX_COST_LAG_DAYS} days behind the UTC day of the "
        "newest raw request (lag_days).",
        _suite(
            COST_DAILY,
            FRESH_CHECK,
            """
            select coalesce(
                (select (max(occurred_at) at time zone 'utc')::date from raw.llm_requests)
                - coalesce((select max(usage_date) from marts.fct_llm_cost_daily), 'epoch'::date),
                0
            ) as lag_days
            """,
            max_between("lag_days", max_value=MAX_COST_LAG_DAYS),
        ),
        warn=True,
    ),
    QualityCheck(
        SECURITY_DAILY,
        VALID_VALUES_CHECK,
        f"Great Expectations, alert days from {COMPLETE_DAYS} days ago: known severity, at "
        "least one alert per row, confidence in [0, 1].",
        _suite(
            SECURITY_DAILY,
            VALID_VALUES_CHECK,
            _select("*", "marts.fct_security_alerts_daily", f"alert_date >= {_RECENT_DAYS}"),
            in_set("severity", SEVERITIES),
            between("alert_count", 1),
            between("confidence_avg", 0, 1),
            between("alerts_per_1k_requests", 0),
        ),
    ),
    QualityCheck(
        POLICY_DAILY,
        VALID_VALUES_CHECK,
        f"Great Expectations, violation days from {COMPLETE_DAYS} days ago: known severity, at "
        "least one violation per row.",
        _suite(
            POLICY_DAILY,
            VALID_VALUES_CHECK,
            _select("*", "marts.fct_policy_violations_daily", f"violation_date >= {_RECENT_DAYS}"),
            in_set("severity", SEVERITIES),
            between("violation_count", 1),
            between("violations_per_1k_requests", 0),
        ),
    ),
)
