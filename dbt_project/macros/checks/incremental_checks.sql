{#-
    Run-operations behind scripts/check_incremental_equivalence.sh: keep a full refresh of a mart
    as the reference, damage the mart the ways an incremental run must repair, and compare the
    repaired mart with the reference row for row. They write to the marts: dev and test
    databases only.
-#}

{% macro _incremental_check_reference(model) -%}
    {%- set mart = ref(model) -%}
    {{ return(api.Relation.create(
        database=mart.database, schema='dbt_checks', identifier=model ~ '__full_refresh'
    )) }}
{%- endmacro %}


{#- Copy the mart (just built with --full-refresh) to dbt_checks.<model>__full_refresh. -#}
{% macro incremental_check_snapshot(model) %}
    {%- set reference = _incremental_check_reference(model) -%}
    {%- do run_query("create schema if not exists " ~ adapter.quote(reference.schema)) -%}
    {%- do run_query("drop table if exists " ~ reference) -%}
    {%- do run_query("create table " ~ reference ~ " as select * from " ~ ref(model)) -%}
    {%- do log(model ~ ": reference kept in " ~ reference, info=true) -%}
{% endmacro %}


{#-
    Damage the mart the ways a rebuild must repair: drop the buckets of the newest
    `drop_newest_hours` (relative to the newest bucket), then add 1000 to request_count in the
    buckets of the next `corrupt_newest_hours`, and in [corrupt_from, corrupt_to) (ISO-8601 UTC).
-#}
{% macro incremental_check_damage(model, bucket_column, drop_newest_hours=none, corrupt_newest_hours=none, corrupt_from=none, corrupt_to=none) %}
    {%- set mart = ref(model) -%}
    {%- set newest = "(select max(" ~ bucket_column ~ ") from " ~ mart ~ ")" -%}
    {%- if drop_newest_hours is not none -%}
        {%- set deleted = run_query(
            "with gone as (delete from " ~ mart ~ " where " ~ bucket_column ~ " > " ~ newest
            ~ " - interval '" ~ (drop_newest_hours | int) ~ " hours' returning 1)"
            ~ " select count(*) from gone"
        ) -%}
        {%- do log(model ~ ": dropped " ~ deleted.columns[0].values()[0] ~ " rows of the newest " ~ drop_newest_hours ~ " hours", info=true) -%}
    {%- endif -%}
    {%- if corrupt_newest_hours is not none -%}
        {%- set updated = run_query(
            "with hit as (update " ~ mart ~ " set request_count = request_count + 1000 where "
            ~ bucket_column ~ " > " ~ newest ~ " - interval '" ~ (corrupt_newest_hours | int)
            ~ " hours' returning 1) select count(*) from hit"
        ) -%}
        {%- do log(model ~ ": corrupted " ~ updated.columns[0].values()[0] ~ " rows of the newest " ~ corrupt_newest_hours ~ " hours", info=true) -%}
    {%- endif -%}
    {%- if corrupt_from is not none -%}
        {%- set updated = run_query(
            "with hit as (update " ~ mart ~ " set request_count = request_count + 1000 where "
            ~ bucket_column ~ " >= " ~ utc_timestamp_literal(corrupt_from, '-infinity') ~ " and "
            ~ bucket_column ~ " < " ~ utc_timestamp_literal(corrupt_to, 'infinity')
            ~ " returning 1) select count(*) from hit"
        ) -%}
        {%- do log(model ~ ": corrupted " ~ updated.columns[0].values()[0] ~ " rows in [" ~ corrupt_from ~ ", " ~ corrupt_to ~ ")", info=true) -%}
    {%- endif -%}
{% endmacro %}


{#- Log `newest_day=YYYY-MM-DD`, the UTC day of the mart's newest bucket, for scripts. -#}
{% macro incremental_check_newest_day(model, bucket_column) %}
    {%- set result = run_query(
        "select to_char(max(" ~ bucket_column ~ ")"
        ~ (" at time zone 'utc'" if bucket_column.endswith('_at') else "")
        ~ ", 'YYYY-MM-DD') from " ~ ref(model)
    ) -%}
    {%- do log("newest_day=" ~ result.rows[0][0], info=true) -%}
{% endmacro %}


{#- Fail unless the mart holds exactly the reference's rows (as multisets, every column). -#}
{% macro incremental_check_compare(model) %}
    {%- set mart = ref(model) -%}
    {%- set reference = _incremental_check_reference(model) -%}
    {%- set result = run_query(
        "select"
        ~ " (select count(*) from (select * from " ~ mart ~ " except all select * from " ~ reference ~ ") as extra),"
        ~ " (select count(*) from (select * from " ~ reference ~ " except all select * from " ~ mart ~ ") as missing),"
        ~ " (select count(*) from " ~ mart ~ ")"
    ) -%}
    {%- set extra = result.rows[0][0] -%}
    {%- set missing = result.rows[0][1] -%}
    {%- set rows = result.rows[0][2] -%}
    {%- if extra != 0 or missing != 0 -%}
        {{ exceptions.raise_compiler_error(model ~ " differs from its full refresh: " ~ extra ~ " rows not in it, " ~ missing ~ " rows missing") }}
    {%- endif -%}
    {%- do log(model ~ ": identical to the full refresh (" ~ rows ~ " rows)", info=true) -%}
{% endmacro %}
