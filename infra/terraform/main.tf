provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = var.name
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  name = "${var.name}-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  # Internal names the services reach each other by; the private zone lives in dns.tf.
  zone_name     = "${local.name}.internal"
  database_host = "timescaledb.${local.zone_name}"
  dagster_host  = "dagster.${local.zone_name}"
  api_host      = "api.${local.zone_name}"
  mlflow_host   = "mlflow.${local.zone_name}"

  # One database login per service, each a member of the group role migration 0007 grants; a
  # service's databases other than llmhub are its own. The owner role runs migrations only.
  database_owner = "llmhub"
  database_services = {
    ingest  = { login = "svc_ingest", group = "llmhub_ingest", databases = ["llmhub"] }
    api     = { login = "svc_api", group = "llmhub_api", databases = ["llmhub"] }
    dagster = { login = "svc_dagster", group = "llmhub_dagster", databases = ["llmhub", "dagster"] }
    mlflow  = { login = "svc_mlflow", group = "llmhub_mlflow", databases = ["mlflow", "mlflow_auth"] }
  }
}

module "credentials" {
  source = "./modules/credentials"

  name                 = local.name
  database_host        = local.database_host
  owner_role           = local.database_owner
  services             = local.database_services
  recovery_window_days = var.secret_recovery_window_days
  password_version     = var.database_password_version
}

# The owner's secret lived in the timescaledb module before the per-service logins.
moved {
  from = module.timescaledb.aws_secretsmanager_secret.database
  to   = module.credentials.aws_secretsmanager_secret.database
}

moved {
  from = module.timescaledb.aws_secretsmanager_secret_version.database
  to   = module.credentials.aws_secretsmanager_secret_version.database
}

module "network" {
  source = "./modules/network"

  name     = local.name
  vpc_cidr = var.vpc_cidr
  azs      = local.azs
}

module "kafka" {
  source = "./modules/kafka"

  name               = local.name
  kafka_version      = var.kafka_version
  instance_type      = var.kafka_instance_type
  brokers_per_az     = var.kafka_brokers_per_az
  volume_size_gb     = var.kafka_volume_size_gb
  subnet_ids         = module.network.private_subnet_ids
  security_group_id  = aws_security_group.this["kafka"].id
  log_retention_days = var.log_retention_days
}

module "timescaledb" {
  source = "./modules/timescaledb"

  name                = local.name
  host_name           = local.database_host
  instance_type       = var.timescaledb_instance_type
  volume_size_gb      = var.timescaledb_volume_size_gb
  snapshot_retention  = var.timescaledb_snapshot_retention
  subnet_id           = module.network.private_subnet_ids[0]
  availability_zone   = local.azs[0]
  security_group_id   = aws_security_group.this["timescaledb"].id
  client_cidr         = var.vpc_cidr
  owner_role          = local.database_owner
  owner_secret_arn    = module.credentials.owner_secret_arn
  services            = local.database_services
  service_secret_arns = module.credentials.service_secret_arns
  secret_version_ids  = module.credentials.versions
}

module "services" {
  source = "./modules/services"

  name                       = local.name
  aws_region                 = var.aws_region
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.private_subnet_ids
  alb_security_group_id      = aws_security_group.this["alb"].id
  dagster_security_group_ids = [aws_security_group.this["dagster"].id, aws_security_group.this["kafka_client"].id]
  mlflow_security_group_id   = aws_security_group.this["mlflow"].id
  hub_image                  = "${aws_ecr_repository.this["hub"].repository_url}:${var.image_tag}"
  mlflow_image               = "${aws_ecr_repository.this["mlflow"].repository_url}:${var.mlflow_image_tag}"
  ecr_repository_arns        = [for repo in aws_ecr_repository.this : repo.arn]
  migration_secret_arn       = module.credentials.owner_secret_arn
  service_secret_arns        = module.credentials.service_secret_arns
  mlflow_auth_secret_arn     = module.credentials.mlflow_auth_secret_arn
  kafka_bootstrap            = module.kafka.bootstrap_brokers
  mlflow_host                = local.mlflow_host
  api_security_group_ids     = [aws_security_group.this["api"].id, aws_security_group.this["kafka_client"].id]
  api_host                   = local.api_host
  api_jwks_url               = var.api_jwks_url
  api_jwt_issuer             = var.api_jwt_issuer
  api_jwt_audience           = var.api_jwt_audience
  dagster_host               = local.dagster_host
  ui_certificate_arn         = var.ui_certificate_arn
  dagster_daemon_cpu         = var.dagster_daemon_cpu
  dagster_daemon_memory      = var.dagster_daemon_memory
  log_retention_days         = var.log_retention_days
}

# Images are built and pushed outside Terraform (see README); the repositories live here so the
# task definitions can name them.
resource "aws_ecr_repository" "this" {
  for_each = toset(["hub", "mlflow"])

  name                 = "${local.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 30 newest images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 30
      }
      action = { type = "expire" }
    }]
  })
}
