output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "alb_dns_name" {
  description = "DNS name of the internal load balancer."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the load balancer (for alias records)."
  value       = aws_lb.this.zone_id
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI, the value of MLFLOW_TRACKING_URI."
  value       = local.mlflow_tracking_uri
}

output "artifact_bucket" {
  description = "S3 bucket of the MLflow artifacts."
  value       = aws_s3_bucket.artifacts.bucket
}

output "dagster_daemon_task_definition" {
  description = "Task definition of the daemon (reused for one-off hub commands such as migrations)."
  value       = aws_ecs_task_definition.dagster["dagster-daemon"].arn
}

output "migrate_task_definition" {
  description = "Task definition that runs `llmhub db migrate` as the hub database's owner."
  value       = aws_ecs_task_definition.migrate.arn
}

output "ui_user_pool_id" {
  description = "Cognito user pool whose users may open the Dagster UI (create them there)."
  value       = aws_cognito_user_pool.ui.id
}
