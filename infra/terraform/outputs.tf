# The three settings the hub reads. The database URL holds the password, so it is not an output:
# read it from Secrets Manager (database_url_command) or let ECS inject it, as the tasks here do.

output "llmhub_kafka_bootstrap" {
  description = "Value of LLMHUB_KAFKA_BOOTSTRAP: the MSK PLAINTEXT bootstrap servers."
  value       = module.kafka.bootstrap_brokers
}

output "mlflow_tracking_uri" {
  description = "Value of MLFLOW_TRACKING_URI: the MLflow server behind the internal load balancer."
  value       = module.services.mlflow_tracking_uri
}

output "database_secret_arn" {
  description = "Secret of the hub database's owner (url key): migrations and administration only; services use service_secret_arns."
  value       = module.credentials.owner_secret_arn
}

output "service_secret_arns" {
  description = "Per service (ingest, api, dagster, mlflow) the secret with its own database login; its url key is that service's LLMHUB_DATABASE_URL."
  value       = module.credentials.service_secret_arns
}

output "service_database_logins" {
  description = "Per service, its login role and the group role of migration 0007 it is a member of."
  value       = { for key, service in local.database_services : key => { login = service.login, group = service.group } }
}

output "database_url_command" {
  description = "Prints the owner's LLMHUB_DATABASE_URL (needs secretsmanager:GetSecretValue on the secret)."
  value       = "aws secretsmanager get-secret-value --region ${var.aws_region} --secret-id ${module.credentials.owner_secret_arn} --query SecretString --output text | jq -r .url"
}

output "dagster_url" {
  description = "Dagster UI (Cognito sign-in), from inside the VPC or var.client_cidr_blocks."
  value       = "https://${local.dagster_host}"
}

output "ui_user_pool_id" {
  description = "Cognito user pool of the people allowed into the Dagster UI."
  value       = module.services.ui_user_pool_id
}

output "mlflow_auth_secret_arn" {
  description = "Secret with MLflow's administrator login (basic-auth app)."
  value       = module.credentials.mlflow_auth_secret_arn
}

output "migrate_task_definition" {
  description = "Task definition that runs `llmhub db migrate` as the database owner."
  value       = module.services.migrate_task_definition
}

output "timescaledb_host" {
  description = "Private DNS name of the TimescaleDB server."
  value       = local.database_host
}

output "timescaledb_instance_id" {
  description = "Instance ID of the TimescaleDB server (Session Manager shell and port forwarding)."
  value       = module.timescaledb.instance_id
}

output "kafka_client_security_group_id" {
  description = "Attach to any producer or consumer in this VPC to be allowed to reach the brokers."
  value       = aws_security_group.this["kafka_client"].id
}

output "ecr_repository_urls" {
  description = "Where to push the hub and MLflow images."
  value       = { for key, repo in aws_ecr_repository.this : key => repo.repository_url }
}

output "ecs_cluster_name" {
  description = "ECS cluster running the Dagster webserver, the Dagster daemon and MLflow."
  value       = module.services.cluster_name
}

output "dagster_daemon_task_definition" {
  description = "Task definition to run one-off hub commands with (e.g. llmhub db migrate)."
  value       = module.services.dagster_daemon_task_definition
}

output "mlflow_artifact_bucket" {
  description = "S3 bucket holding MLflow artifacts."
  value       = module.services.artifact_bucket
}

output "vpc_id" {
  description = "VPC of the deployment."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets (for producers or one-off tasks placed next to the hub)."
  value       = module.network.private_subnet_ids
}

output "task_security_group_ids" {
  description = "Security groups for one-off hub tasks (database, Kafka and MLflow access)."
  value       = [aws_security_group.this["dagster"].id, aws_security_group.this["kafka_client"].id]
}

output "api_url" {
  description = "The HTTP API on the internal load balancer (OpenAPI at /docs)."
  value       = "https://${local.api_host}"
}

output "prometheus_remote_write_url" {
  description = "Remote-write endpoint of the managed Prometheus workspace (SigV4, service aps)."
  value       = "${aws_prometheus_workspace.this.prometheus_endpoint}api/v1/remote_write"
}
