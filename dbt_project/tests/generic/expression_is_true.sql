{#- Fails on rows where `expression` is false (a null result passes: pair with not_null). -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
