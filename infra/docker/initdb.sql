-- Run once by the timescaledb container on an empty data volume (docker-entrypoint-initdb.d).
-- The same three databases as llmhub.stack.timescale.DATABASES: the hub's tables, Dagster's
-- run/event storage and MLflow's backend store. The migrations create the timescaledb extension.
create database llmhub;
create database dagster;
create database mlflow;
