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
  description = "Secrets Manager secret whose url key is LLMHUB_DATABASE_URL (dagster_url and mlflow_url keys for the other two databases)."
  value       = module.timescaledb.secret_arn
}

output "database_url_command" {
  description = "Prints LLMHUB_DATABASE_URL (needs secretsmanager:GetSecretValue on the secret)."
  value       = "aws secretsmanager get-secret-value --region ${var.aws_region} --secret-id ${module.timescaledb.secret_arn} --query SecretString --output text | jq -r .url"
}

output "dagster_url" {
  description = "Dagster UI, from inside the VPC or var.client_cidr_blocks."
  value       = "http://${local.dagster_host}"
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
  value       = "http://${local.api_host}"
}

output "api_database_secret_arn" {
  description = "Secret to fill with the API's database URL as role llmhub_api (see README)."
  value       = module.services.api_database_secret_arn
}
