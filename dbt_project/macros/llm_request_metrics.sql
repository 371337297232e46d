{#-
    The aggregate columns of the request marts, shared by the hourly and the daily grain so both
    compute every metric the same way from raw requests (the daily percentiles are never derived
    from hourly ones).

    - Latency and time-to-first-token statistics cover successful requests only: failures have
      their own latency profile (429s answer in ~150 ms, timeouts after 30-60 s) that would
      mask a model slowing down. percentile_cont is exact (interpolated) over those requests.
    - error_count counts status 'error'; rate-limited (429) requests are counted apart, so
      error_rate and rate_limited_rate do not overlap.
    - output_tokens_per_second = generation_output_tokens / generation_time_ms * 1000, over
      successful requests with a time to first token, output tokens and latency above that
      time to first token; generation time is latency_ms - time_to_first_token_ms (decoding,
      after the prompt is processed). Both parts are kept so coarser grains can re-aggregate.
    - Sums of floating-point columns are taken over numeric: exact, so the result does not
      depend on the order the rows are read in (incremental and full refresh agree to the bit).
    - paid_request_count and cost_log_sum (the requests with a cost above 0 and the sum of the
      natural logs of their costs) give the geometric mean cost per billed request,
      exp(cost_log_sum / paid_request_count), at any grain: request costs are right-skewed, and
      the cost shift test (ml/anomaly/shift_test.py, rules 3) reads this mean, not the hour's
      arithmetic one that its largest requests pull about. latency_log_* and
      time_to_first_token_log_* do the same for the latencies of successful requests: the
      latency shift test reads their geometric means, not a p95 of a quiet hour's few requests.
    - Statistics are rounded to the microsecond (3 decimals of ms), rates to 6 decimals.
-#}
{% macro llm_request_metrics() %}
        count(*) as request_count,
        count(*) filter (where is_success) as success_count,
        count(*) filter (where is_error) as error_count,
        count(*) filter (where is_rate_limited) as rate_limited_count,
        round(count(*) filter (where is_error)::numeric / count(*), 6) as error_rate,
        round(count(*) filter (where is_rate_limited)::numeric / count(*), 6) as rate_limited_rate,
        round(avg(latency_ms::numeric) filter (where is_success), 3) as latency_avg_ms,
        percentile_cont(array[0.5, 0.95, 0.99]) within group (order by latency_ms)
            filter (where is_success) as latency_percentiles_ms,
        percentile_cont(array[0.5, 0.95]) within group (order by time_to_first_token_ms)
            filter (where is_success and time_to_first_token_ms is not null)
            as time_to_first_token_percentiles_ms,
        coalesce(sum(input_tokens), 0)::bigint as input_tokens,
        coalesce(sum(output_tokens), 0)::bigint as output_tokens,
        coalesce(sum(cache_read_tokens), 0)::bigint as cache_read_tokens,
        coalesce(sum(output_tokens) filter (where {{ has_generation_time() }}), 0)::bigint
            as generation_output_tokens,
        coalesce(
            sum((latency_ms - time_to_first_token_ms)::numeric)
                filter (where {{ has_generation_time() }}),
            0
        ) as generation_time_ms,
        coalesce(sum(cost_usd), 0) as cost_usd,
        count(*) filter (where cost_usd > 0) as paid_request_count,
        coalesce(sum(ln(cost_usd)) filter (where cost_usd > 0), 0) as cost_log_sum,
        count(*) filter (where is_success and latency_ms > 0) as latency_log_count,
        coalesce(
            sum(ln(latency_ms::numeric)) filter (where is_success and latency_ms > 0), 0
        ) as latency_log_sum,
        count(*) filter (where is_success and time_to_first_token_ms > 0)
            as time_to_first_token_log_count,
        coalesce(
            sum(ln(time_to_first_token_ms::numeric))
                filter (where is_success and time_to_first_token_ms > 0),
            0
        ) as time_to_first_token_log_sum
{% endmacro %}


{#- Requests whose decoding time can be measured (see llm_request_metrics). -#}
{% macro has_generation_time() -%}
    is_success
    and time_to_first_token_ms is not null
    and output_tokens > 0
    and latency_ms > time_to_first_token_ms
{%- endmacro %}


{#- The rounded statistics unpacked from the aggregate arrays of llm_request_metrics. -#}
{% macro llm_request_statistics() %}
        round(latency_percentiles_ms[1]::numeric, 3) as latency_p50_ms,
        round(latency_percentiles_ms[2]::numeric, 3) as latency_p95_ms,
        round(latency_percentiles_ms[3]::numeric, 3) as latency_p99_ms,
        round(time_to_first_token_percentiles_ms[1]::numeric, 3) as time_to_first_token_p50_ms,
        round(time_to_first_token_percentiles_ms[2]::numeric, 3) as time_to_first_token_p95_ms,
        round(generation_output_tokens * 1000.0 / nullif(generation_time_ms, 0), 3)
            as output_tokens_per_second
{% endmacro %}


{#- The request marts' metric columns after aggregation, in order: the counts and rates, the
    statistics unpacked by llm_request_statistics, the sums (one list for both grains). -#}
{% macro llm_request_columns() %}
        request_count,
        success_count,
        error_count,
        rate_limited_count,
        error_rate,
        rate_limited_rate,
        latency_avg_ms,
        {{ llm_request_statistics() }},
        input_tokens,
        output_tokens,
        cache_read_tokens,
        generation_output_tokens,
        generation_time_ms,
        cost_usd,
        paid_request_count,
        cost_log_sum,
        latency_log_count,
        latency_log_sum,
        time_to_first_token_log_count,
        time_to_first_token_log_sum
{% endmacro %}
