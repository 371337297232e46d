{#-
    md5 of the given SQL expressions joined with '|', nulls as a sentinel. Callers pass text that
    does not depend on the session (timestamps through utc_text, dates through to_char), so a key
    is the same whichever TimeZone or DateStyle the connection has.
-#}
{% macro surrogate_key(expressions) -%}
    md5(concat_ws(
        '|'
        {%- for expression in expressions %},
        coalesce(({{ expression }})::text, '_dbt_null_')
        {%- endfor %}
    ))
{%- endmacro %}


{#- ISO-8601 text of a timestamptz in UTC, microsecond precision. -#}
{% macro utc_text(column) -%}
    to_char({{ column }} at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
{%- endmacro %}
