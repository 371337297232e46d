{#-
    The rows an incremental mart reprocesses, as a SQL predicate on the event timestamp.

    - full refresh or first build: every row (`true`);
    - vars backfill_start / backfill_end set: the window [start, end), widened to whole buckets
      of `grain` so that no bucket is rebuilt from part of its rows;
    - otherwise: from (newest bucket in {{ this }} - lookback_hours), also a bucket boundary.

    The mart is materialised delete+insert keyed on its bucket column, so every bucket the
    window touches is deleted and rebuilt whole: re-running or backfilling gives the same rows
    as a full refresh. Events older than the window when they land need a backfill.

    Args:
        event_column: timestamptz column of the input rows (occurred_at).
        bucket_column: the mart's bucket column; timestamptz for grain 'hour', date for 'day'.
        grain: 'hour' or 'day'.
-#}
{% macro incremental_window(event_column, bucket_column, grain) -%}
    {%- if grain not in ('hour', 'day') -%}
        {{ exceptions.raise_compiler_error("incremental_window: grain must be 'hour' or 'day', got " ~ grain) }}
    {%- endif -%}
    {%- if not is_incremental() -%}
        true
    {%- else -%}
        {%- set backfill_start = var('backfill_start', none) -%}
        {%- set backfill_end = var('backfill_end', none) -%}
        {%- if backfill_start is not none or backfill_end is not none -%}
            {%- set lower = utc_timestamp_literal(backfill_start, '-infinity') -%}
            {%- set upper = utc_timestamp_literal(backfill_end, 'infinity') -%}
            {%- do log(model.name ~ ": backfill window [" ~ (backfill_start or '-infinity') ~ ", " ~ (backfill_end or 'infinity') ~ ") widened to whole " ~ grain ~ "s", info=true) if execute -%}
            {{ event_column }} >= {{ utc_bucket_floor(lower, grain) }}
            and {{ event_column }} < {{ utc_bucket_ceil(upper, grain) }}
        {%- else -%}
            {%- set lookback_hours = lookback_hours_var() -%}
            {%- do log(model.name ~ ": incremental window from newest " ~ grain ~ " - " ~ lookback_hours ~ " h", info=true) if execute -%}
            {%- if grain == 'hour' -%}
                {%- set newest = "max(" ~ bucket_column ~ ")" -%}
            {%- else -%}
                {%- set newest = "(max(" ~ bucket_column ~ ")::timestamp at time zone 'utc')" -%}
            {%- endif -%}
            {{ event_column }} >= (
                select coalesce(
                    {{ utc_bucket_floor(newest ~ " - interval '" ~ lookback_hours ~ " hours'", grain) }},
                    '-infinity'::timestamptz
                )
                from {{ this }}
            )
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The lookback_hours var as a non-negative integer; anything else is an error. -#}
{% macro lookback_hours_var() -%}
    {%- set value = var('lookback_hours', 6) -%}
    {%- if value is number and value == value | int and value >= 0 -%}
        {{ return(value | int) }}
    {%- elif value is string and value.strip().isdigit() -%}
        {{ return(value.strip() | int) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("var lookback_hours must be a non-negative integer, got " ~ value) }}
    {%- endif -%}
{%- endmacro %}


{#-
    A timestamptz SQL literal from a var value: ISO-8601 text or a date; without a UTC offset
    it is read as UTC (never in the session's time zone). None gives `default`.
-#}
{% macro utc_timestamp_literal(value, default) -%}
    {%- if value is none -%}
        {{ return("'" ~ default ~ "'::timestamptz") }}
    {%- endif -%}
    {%- set text = (value | string).strip() -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?', text) -%}
        {{ exceptions.raise_compiler_error("backfill_start / backfill_end must be ISO-8601 (e.g. 2026-11-20 or 2026-11-20T06:00:00Z), got " ~ text) }}
    {%- endif -%}
    {%- if modules.re.search('(Z|[+-][0-9]{2}(:?[0-9]{2})?)$', text) and modules.re.search('[ T]', text) -%}
        {{ return("'" ~ text ~ "'::timestamptz") }}
    {%- else -%}
        {{ return("('" ~ text ~ "'::timestamp at time zone 'utc')") }}
    {%- endif -%}
{%- endmacro %}
