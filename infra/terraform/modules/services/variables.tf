variable "name" {
  description = "Prefix of resource names."
  type        = string
}

variable "aws_region" {
  description = "Region, for the awslogs driver and the AWS SDK in MLflow."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer's target groups."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks and the internal load balancer."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the internal load balancer."
  type        = string
}

variable "dagster_security_group_ids" {
  description = "Security groups of the Dagster tasks (their own and the Kafka client group)."
  type        = list(string)
}

variable "mlflow_security_group_id" {
  description = "Security group of the MLflow tasks."
  type        = string
}

variable "hub_image" {
  description = "Image URI of the hub (Dagster code location, webserver and daemon)."
  type        = string
}

variable "mlflow_image" {
  description = "Image URI of the MLflow server (mlflow, psycopg2 and boto3 installed)."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the tasks may pull from."
  type        = list(string)
}

variable "migration_secret_arn" {
  description = "Secret of the hub database's owner (url key), for the one-off migration task only."
  type        = string
}

variable "service_secret_arns" {
  description = "Per service (dagster, mlflow, ...) the secret with its own database login (url and <database>_url keys)."
  type        = map(string)

  validation {
    condition     = alltrue([for key in ["dagster", "mlflow"] : contains(keys(var.service_secret_arns), key)])
    error_message = "service_secret_arns needs the dagster and mlflow secrets."
  }
}

variable "dagster_host" {
  description = "Host name of the Dagster UI (the Cognito callback URL names it)."
  type        = string
}

variable "ui_certificate_arn" {
  description = "ACM certificate for the UI host names, on the load balancer's HTTPS listener."
  type        = string
}

variable "mlflow_auth_secret_arn" {
  description = "Secret with MLflow's admin_username, admin_password and flask_secret_key."
  type        = string
}

variable "kafka_bootstrap" {
  description = "Kafka bootstrap servers."
  type        = string
}

variable "mlflow_host" {
  description = "Host name routed to MLflow on the load balancer."
  type        = string
}

variable "dagster_daemon_cpu" {
  description = "Fargate CPU units of the Dagster daemon task."
  type        = number
}

variable "dagster_daemon_memory" {
  description = "Fargate memory (MiB) of the Dagster daemon task."
  type        = number
}

variable "log_retention_days" {
  description = "CloudWatch retention of the task logs, in days."
  type        = number
}

variable "api_security_group_ids" {
  description = "Security groups of the API tasks (their own and the Kafka client group)."
  type        = list(string)
}

variable "api_host" {
  description = "Host name routed to the HTTP API on the load balancer."
  type        = string
}

variable "api_desired_count" {
  description = "API tasks (quota state is shared through PostgreSQL, so any count works)."
  type        = number
  default     = 2
}

variable "api_jwks_url" {
  description = "JWKS URL of the OIDC issuer whose bearer tokens the API accepts (empty: API keys only)."
  type        = string
  default     = ""
}

variable "api_jwt_issuer" {
  description = "Required iss claim of OIDC tokens."
  type        = string
  default     = ""
}

variable "api_jwt_audience" {
  description = "Required aud claim of OIDC tokens."
  type        = string
  default     = ""
}
