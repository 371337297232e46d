"""Tables the ML assets publish to, the budgets they project against, and analyst feedback.

Schema ``analytics`` holds what the models write (anomalies, forecasts, budget projections) and
what people write back (budgets, anomaly feedback). Writes are idempotent upserts on each table's
natural key, so re-scoring an hour replaces its rows instead of duplicating them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create schema if not exists analytics")
    op.execute(
        """
        create table analytics.anomalies (
            bucket_at timestamptz not null,
            tenant_id text not null,
            asset_id text not null,
            request_model text not null,
            metric text not null,
            observed double precision not null,
            expected double precision not null,
            deviation double precision not null,
            score double precision not null check (score between 0 and 1),
            is_anomaly boolean not null,
            detector text not null,
            model_name text not null,
            model_version text not null,
            mlflow_run_id text,
            scored_at timestamptz not null default now(),
            primary key (bucket_at, tenant_id, asset_id, request_model, metric)
        )
        """
        # The DDL reads top to bottom as the schema it creates; a migration is not split.
    )
    op.execute(
        "create index anomalies_flagged_ix on analytics.anomalies (bucket_at desc) where is_anomaly"
    )
    op.execute(
        """
        create table analytics.anomaly_feedback (
            bucket_at timestamptz not null,
            tenant_id text not null,
            asset_id text not null,
            request_model text not null,
            metric text not null,
            verdict text not null check (verdict in ('false_positive', 'true_positive')),
            noted_by text not null default current_user,
            noted_at timestamptz not null default now(),
            comment text,
            primary key (bucket_at, tenant_id, asset_id, request_model, metric)
        )
        """
    )
    op.execute(
        """
        create table analytics.forecasts (
            series_key text not null,
            tenant_id text not null,
            asset_id text,
            metric text not null,
            grain text not null check (grain in ('hour', 'day')),
            target_at timestamptz not null,
            forecast_made_at timestamptz not null,
            yhat double precision not null,
            yhat_lower double precision not null,
            yhat_upper double precision not null,
            model_name text not null,
            model_version text not null,
            mlflow_run_id text,
            primary key (series_key, metric, grain, target_at, forecast_made_at)
        )
        """
    )
    op.execute(
        """
        create table analytics.budgets (
            tenant_id text not null,
            asset_id text not null default '*',
            monthly_budget_usd numeric(18, 2) not null check (monthly_budget_usd > 0),
            updated_at timestamptz not null default now(),
            primary key (tenant_id, asset_id)
        )
        """
    )
    op.execute(
        "comment on column analytics.budgets.asset_id is "
        "'''*'' for the tenant-wide budget, otherwise the application it caps'"
    )
    op.execute(
        """
        create table analytics.budget_projections (
            tenant_id text not null,
            asset_id text not null default '*',
            month date not null,
            projected_on date not null,
            budget_usd numeric(18, 2),
            month_to_date_usd double precision not null,
            projected_month_end_usd double precision not null,
            projected_lower_usd double precision not null,
            projected_upper_usd double precision not null,
            breach_date date,
            model_name text not null,
            model_version text not null,
            mlflow_run_id text,
            primary key (tenant_id, asset_id, month, projected_on)
        )
        """
    )
    op.execute(
        "do $$ begin if exists (select from pg_roles where rolname = 'analyst') then "
        "grant usage on schema analytics to analyst; "
        "grant select on all tables in schema analytics to analyst; "
        "grant insert, update on analytics.anomaly_feedback to analyst; "
        "end if; end $$"
    )


def downgrade() -> None:
    for table in ("budget_projections", "budgets", "forecasts", "anomaly_feedback", "anomalies"):
        op.execute(f"drop table if exists analytics.{table}")
