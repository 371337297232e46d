variable "aws_region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "llmhub"

  validation {
    # With the environment and a suffix, load balancer and target group names stay within 32.
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name))
    error_message = "name must be 2-12 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment label, part of names and tags (prod, staging, ...)."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lower-case letters or digits, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC created for the hub."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones used (one private subnet and one Kafka broker group each)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3 (MSK needs at least two zones)."
  }
}

variable "ui_certificate_arn" {
  description = "ACM certificate (issued, or imported from your internal CA) covering dagster.<name>-<environment>.internal and mlflow.<name>-<environment>.internal: the UIs are HTTPS only, and the load balancer can only authenticate on HTTPS."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.ui_certificate_arn))
    error_message = "ui_certificate_arn must be an ACM certificate ARN."
  }
}

variable "client_cidr_blocks" {
  description = "CIDRs (VPN, office, peered VPCs) allowed to open the Dagster and MLflow UIs on the internal load balancer. Empty: only the hub's own tasks reach MLflow."
  type        = list(string)
  default     = []
}

variable "kafka_client_cidr_blocks" {
  description = "CIDRs of producers outside this VPC's tasks that may write to Kafka. Producers inside AWS should rather attach the kafka_client_security_group_id output."
  type        = list(string)
  default     = []
}

variable "kafka_version" {
  description = "MSK Apache Kafka version."
  type        = string
  default     = "3.9.x"
}

variable "kafka_instance_type" {
  description = "MSK broker instance type. kafka.t3.small suits a few MB/s; use kafka.m7g.large and up beyond that."
  type        = string
  default     = "kafka.t3.small"
}

variable "kafka_brokers_per_az" {
  description = "MSK brokers per availability zone."
  type        = number
  default     = 1
}

variable "kafka_volume_size_gb" {
  description = "EBS storage per MSK broker, in GiB."
  type        = number
  default     = 100
}

variable "timescaledb_instance_type" {
  description = "EC2 instance type of the TimescaleDB server (non-burstable: ingestion is steady)."
  type        = string
  default     = "m7i.large"
}

variable "timescaledb_volume_size_gb" {
  description = "Size of the encrypted gp3 data volume holding the PostgreSQL cluster, in GiB."
  type        = number
  default     = 200
}

variable "timescaledb_snapshot_retention" {
  description = "Daily EBS snapshots of the data volume kept."
  type        = number
  default     = 7
}

variable "database_password_version" {
  description = "Increment to store a new generated database password (README: rotating the password)."
  type        = number
  default     = 1
}

variable "image_tag" {
  description = "Tag of the hub image in the hub ECR repository (Dagster webserver and daemon run it)."
  type        = string
}

variable "mlflow_image_tag" {
  description = "Tag of the MLflow server image in the mlflow ECR repository (see README)."
  type        = string
  default     = "3.17.2"
}

variable "dagster_daemon_cpu" {
  description = "Fargate CPU units of the Dagster daemon task, which also executes the runs (training included)."
  type        = number
  default     = 2048
}

variable "dagster_daemon_memory" {
  description = "Fargate memory (MiB) of the Dagster daemon task."
  type        = number
  default     = 8192
}

variable "log_retention_days" {
  description = "CloudWatch retention of service and broker logs, in days."
  type        = number
  default     = 30
}

variable "secret_recovery_window_days" {
  description = "Days a deleted database secret can still be restored (0 deletes at once)."
  type        = number
  default     = 7
}

variable "api_jwks_url" {
  description = "JWKS URL of the OIDC issuer the HTTP API trusts (empty: API keys only)."
  type        = string
  default     = ""
}

variable "api_jwt_issuer" {
  description = "Required iss claim of the API's OIDC tokens."
  type        = string
  default     = ""
}

variable "api_jwt_audience" {
  description = "Required aud claim of the API's OIDC tokens."
  type        = string
  default     = ""
}
