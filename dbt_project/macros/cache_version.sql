{#-
    Bump the mart's counter in api.cache_versions (migration 0015), as a post-hook in the
    model's transaction (dbt_project.yml, every model under marts/): the HTTP API caches mart
    results per version, so a reader that sees the new counter also sees the rebuilt rows.
-#}
{% macro bump_cache_version() -%}
select api.bump_cache_version('{{ this.schema }}.{{ this.identifier }}')
{%- endmacro %}
