# Every generated credential of the deployment, in Secrets Manager only: the database owner (runs
# migrations), one database login per service, and MLflow's basic-auth administrator. Passwords
# are generated at apply time by Secrets Manager (an ephemeral resource) and sent write-only, so
# they are in neither the variables nor the state. Letters and digits only, so they can sit in a
# URL unescaped.

locals {
  owner_password = ephemeral.aws_secretsmanager_random_password.database.random_password
  url_base       = "postgresql://${var.owner_role}:${local.owner_password}@${var.database_host}:5432"
}

resource "aws_secretsmanager_secret" "database" {
  name                    = "${var.name}/timescaledb"
  description             = "TimescaleDB owner login of the hub database (migrations only)"
  recovery_window_in_days = var.recovery_window_days
}

ephemeral "aws_secretsmanager_random_password" "database" {
  password_length     = 32
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  # Write-only values are sent only when this changes (README: rotating the passwords).
  secret_string_wo_version = var.password_version
  secret_string_wo = jsonencode({
    username = var.owner_role
    password = local.owner_password
    host     = var.database_host
    port     = 5432
    url      = "${local.url_base}/llmhub?sslmode=require"
  })
}

resource "aws_secretsmanager_secret" "service" {
  for_each = var.services

  name                    = "${var.name}/timescaledb/${each.key}"
  description             = "TimescaleDB login of the ${each.key} service (role ${each.value.login}, member of ${each.value.group})"
  recovery_window_in_days = var.recovery_window_days
}

ephemeral "aws_secretsmanager_random_password" "service" {
  for_each = var.services

  password_length     = 32
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "service" {
  for_each = var.services

  secret_id                = aws_secretsmanager_secret.service[each.key].id
  secret_string_wo_version = var.password_version
  # url: the service's first database; every database also under <database>_url.
  secret_string_wo = jsonencode(merge(
    {
      username = each.value.login
      password = ephemeral.aws_secretsmanager_random_password.service[each.key].random_password
      host     = var.database_host
      port     = 5432
      url      = "postgresql://${each.value.login}:${ephemeral.aws_secretsmanager_random_password.service[each.key].random_password}@${var.database_host}:5432/${each.value.databases[0]}?sslmode=require"
    },
    {
      for db in each.value.databases : "${db}_url" => "postgresql://${each.value.login}:${ephemeral.aws_secretsmanager_random_password.service[each.key].random_password}@${var.database_host}:5432/${db}?sslmode=require"
    },
  ))
}

# MLflow's administrator (also the account the hub's tasks log runs with) and the key that
# signs its web sessions.
resource "aws_secretsmanager_secret" "mlflow_auth" {
  name                    = "${var.name}/mlflow-auth"
  description             = "MLflow basic-auth administrator and Flask session key"
  recovery_window_in_days = var.recovery_window_days
}

ephemeral "aws_secretsmanager_random_password" "mlflow_admin" {
  password_length     = 32
  exclude_punctuation = true
}

ephemeral "aws_secretsmanager_random_password" "mlflow_session_key" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "mlflow_auth" {
  secret_id                = aws_secretsmanager_secret.mlflow_auth.id
  secret_string_wo_version = var.password_version
  secret_string_wo = jsonencode({
    admin_username   = "admin"
    admin_password   = ephemeral.aws_secretsmanager_random_password.mlflow_admin.random_password
    flask_secret_key = ephemeral.aws_secretsmanager_random_password.mlflow_session_key.random_password
  })
}
