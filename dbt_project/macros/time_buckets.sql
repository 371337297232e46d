{#-
    UTC calendar buckets that do not depend on the session's TimeZone: arithmetic happens on
    timestamps without time zone that hold UTC wall-clock time.
-#}

{#- Start of the UTC hour of a timestamptz, as a timestamptz. -#}
{% macro utc_hour(column) -%}
    date_trunc('hour', {{ column }}, 'utc')
{%- endmacro %}


{#- UTC calendar date of a timestamptz. -#}
{% macro utc_date(column) -%}
    ({{ column }} at time zone 'utc')::date
{%- endmacro %}


{#- Start of the `grain` bucket containing a timestamptz expression, as a timestamptz. -#}
{% macro utc_bucket_floor(expression, grain) -%}
    (date_trunc('{{ grain }}', ({{ expression }}) at time zone 'utc') at time zone 'utc')
{%- endmacro %}


{#- Smallest `grain` boundary at or after a timestamptz expression, as a timestamptz. -#}
{% macro utc_bucket_ceil(expression, grain) -%}
    (date_trunc(
        '{{ grain }}',
        ({{ expression }}) at time zone 'utc' + interval '1 {{ grain }}' - interval '1 microsecond'
    ) at time zone 'utc')
{%- endmacro %}
