#!/usr/bin/env bash
# Proves that incremental runs and backfills of the request marts give exactly the rows of a
# full refresh. It rewrites marts.fct_llm_requests_{hourly,daily} and creates schema
# dbt_checks, so it refuses the shared `llmhub` database unless LLMHUB_CHECK_FORCE=1.
#
#   LLMHUB_DB_NAME=llmhub_dbt_dev scripts/check_incremental_equivalence.sh [BACKFILL_DAY]
#
# BACKFILL_DAY (UTC; default three days before the newest data) must lie before the lookback.
set -euo pipefail
cd "$(dirname "$0")/.."

db="${LLMHUB_DB_NAME:-llmhub}"
if [[ "$db" == "llmhub" && "${LLMHUB_CHECK_FORCE:-0}" != "1" ]]; then
    echo "refusing to rewrite the marts of database '$db'; set LLMHUB_DB_NAME" >&2
    exit 2
fi
dbt="${DBT:-../.venv/bin/dbt}"
models=(fct_llm_requests_hourly fct_llm_requests_daily)

dbt_() { "$dbt" --quiet "$@" --profiles-dir .; }
op() {
    local out
    out="$("$dbt" run-operation "$@" --profiles-dir . 2>&1)" || { echo "$out" >&2; exit 1; }
    grep -E 'reference kept|dropped|corrupted|identical' <<<"$out" || true
}
compare() {
    for model in "${models[@]}"; do op incremental_check_compare --args "{model: $model}"; done
}

echo "== 1. full refresh, kept as the reference"
dbt_ run --full-refresh -s "${models[@]}"
for model in "${models[@]}"; do op incremental_check_snapshot --args "{model: $model}"; done

if [[ $# -ge 1 ]]; then
    day="$1"
else
    newest="$("$dbt" run-operation incremental_check_newest_day --profiles-dir . \
        --args '{model: fct_llm_requests_daily, bucket_column: request_date}' \
        | grep -o 'newest_day=[0-9-]*' | cut -d= -f2)"
    day="$(date -u -d "$newest - 3 days" +%F)"
fi
next_day="$(date -u -d "$day + 1 day" +%F)"

echo "== 2. incremental run with nothing new"
dbt_ run -s "${models[@]}"
compare

echo "== 3. newest 12 hours lost, the 4 hours before corrupted: one incremental run repairs both"
op incremental_check_damage --args "{model: fct_llm_requests_hourly, bucket_column: request_hour_at,
    drop_newest_hours: 12, corrupt_newest_hours: 4}"
op incremental_check_damage --args "{model: fct_llm_requests_daily, bucket_column: request_date,
    drop_newest_hours: 12}"
dbt_ run -s "${models[@]}"
compare

echo "== 4. day $day corrupted, older than the lookback: a backfill repairs it"
for model in "${models[@]}"; do
    column=$([[ $model == *hourly ]] && echo request_hour_at || echo request_date)
    op incremental_check_damage --args "{model: $model, bucket_column: $column,
        corrupt_from: '$day', corrupt_to: '$next_day'}"
done
dbt_ run -s "${models[@]}"
if "$dbt" run-operation incremental_check_compare --args "{model: fct_llm_requests_hourly}" \
    --profiles-dir . >/dev/null 2>&1; then
    echo "the damage on $day was inside the lookback window: pick an older BACKFILL_DAY" >&2
    exit 1
fi
# A start inside the day is widened to whole buckets.
dbt_ run -s "${models[@]}" --vars "{backfill_start: '${day}T00:30:00Z', backfill_end: '$next_day'}"
compare

echo "== 5. the same backfill again (idempotent)"
dbt_ run -s "${models[@]}" --vars "{backfill_start: '${day}T00:30:00Z', backfill_end: '$next_day'}"
compare
echo "incremental runs and backfills match the full refresh"
