# Dagster (webserver and daemon) and the MLflow tracking server on ECS Fargate, behind one
# internal load balancer. Runs execute inside the daemon task: Dagster's default queued run
# coordinator hands them to the default run launcher there, so the webserver stays small.

locals {
  services = {
    dagster-webserver = { cpu = 1024, memory = 2048 }
    dagster-daemon    = { cpu = var.dagster_daemon_cpu, memory = var.dagster_daemon_memory }
    mlflow            = { cpu = 1024, memory = 2048 }
    migrate           = { cpu = 512, memory = 1024 }
    api               = { cpu = 1024, memory = 2048 }
  }

  mlflow_tracking_uri = "https://${var.mlflow_host}"

  # What the hub reads (llmhub.config and MLflow's client); the database URLs and the MLflow
  # login come from Secrets Manager at task start, so they appear neither in the task
  # definition nor in the state. Dagster logs in to the database as its own service role
  # (member of llmhub_dagster, migration 0007), never as the owner.
  hub_environment = [
    { name = "LLMHUB_KAFKA_BOOTSTRAP", value = var.kafka_bootstrap },
    { name = "MLFLOW_TRACKING_URI", value = local.mlflow_tracking_uri },
    { name = "DAGSTER_HOME", value = "/opt/dagster/home" },
  ]
  hub_secrets = [
    { name = "LLMHUB_DATABASE_URL", valueFrom = "${var.service_secret_arns["dagster"]}:url::" },
    { name = "LLMHUB_DAGSTER_STORAGE_URL", valueFrom = "${var.service_secret_arns["dagster"]}:dagster_url::" },
    { name = "MLFLOW_TRACKING_USERNAME", valueFrom = "${var.mlflow_auth_secret_arn}:admin_username::" },
    { name = "MLFLOW_TRACKING_PASSWORD", valueFrom = "${var.mlflow_auth_secret_arn}:admin_password::" },
  ]
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.services

  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}

locals {
  log_configuration = {
    for service, group in aws_cloudwatch_log_group.this : service => {
      logDriver = "awslogs"
      options = {
        awslogs-group         = group.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = service
      }
    }
  }
}
