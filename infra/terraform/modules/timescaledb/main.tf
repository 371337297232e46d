# TimescaleDB is not offered on RDS: PostgreSQL 17 from the PGDG repository and TimescaleDB from
# Timescale's own packages on one EC2 instance. The cluster (data and configuration) lives on a
# separate encrypted volume with daily snapshots, so the instance itself is disposable.

locals {
  pg_major = "17"
  # The owner of the hub database: runs the migrations (`llmhub db migrate`) and nothing else.
  db_user = "llmhub"
  arch    = contains(data.aws_ec2_instance_type.this.supported_architectures, "arm64") ? "arm64" : "amd64"

  backup_tag = "${var.name}-timescaledb"

  # One login role per service, each a member of the group role migration 0007 grants
  # (llmhub_<service>); Dagster and MLflow also own their own databases.
  services = {
    ingest  = { login = "svc_ingest", group = "llmhub_ingest", databases = ["llmhub"] }
    api     = { login = "svc_api", group = "llmhub_api", databases = ["llmhub"] }
    dagster = { login = "svc_dagster", group = "llmhub_dagster", databases = ["llmhub", "dagster"] }
    mlflow  = { login = "svc_mlflow", group = "llmhub_mlflow", databases = ["mlflow", "mlflow_auth"] }
  }
  # database -> owner. The hub's schema belongs to the migration role; the others to the one
  # service that uses them (Dagster's run storage, MLflow's tracking and user stores).
  databases = {
    llmhub      = local.db_user
    dagster     = local.services.dagster.login
    mlflow      = local.services.mlflow.login
    mlflow_auth = local.services.mlflow.login
  }
}

data "aws_region" "current" {}

data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/${local.arch}/hvm/ebs-gp3/ami-id"
}

# --- credentials -----------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "database" {
  name                    = "${var.name}/timescaledb"
  description             = "TimescaleDB owner login of the hub database (migrations only)"
  recovery_window_in_days = var.secret_recovery_window_days
}

# Generated at apply time and sent write-only: the passwords never reach the Terraform state.
# Letters and digits only, so they can sit in a URL unescaped.
ephemeral "aws_secretsmanager_random_password" "database" {
  password_length     = 32
  exclude_punctuation = true
}

locals {
  password = ephemeral.aws_secretsmanager_random_password.database.random_password
  url_base = "postgresql://${local.db_user}:${local.password}@${var.host_name}:5432"
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  # Write-only values are sent only when this changes (README: rotating the password).
  secret_string_wo_version = var.password_version
  secret_string_wo = jsonencode({
    username = local.db_user
    password = local.password
    host     = var.host_name
    port     = 5432
    url      = "${local.url_base}/llmhub?sslmode=require"
  })
}

resource "aws_secretsmanager_secret" "service" {
  for_each = local.services

  name                    = "${var.name}/timescaledb/${each.key}"
  description             = "TimescaleDB login of the ${each.key} service (role ${each.value.login}, member of ${each.value.group})"
  recovery_window_in_days = var.secret_recovery_window_days
}

ephemeral "aws_secretsmanager_random_password" "service" {
  for_each = local.services

  password_length     = 32
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "service" {
  for_each = local.services

  secret_id                = aws_secretsmanager_secret.service[each.key].id
  secret_string_wo_version = var.password_version
  # url: the service's main database; the rest by name (dagster: storage_url, mlflow: auth_url).
  secret_string_wo = jsonencode(merge(
    {
      username = each.value.login
      password = ephemeral.aws_secretsmanager_random_password.service[each.key].random_password
      host     = var.host_name
      port     = 5432
      url      = "postgresql://${each.value.login}:${ephemeral.aws_secretsmanager_random_password.service[each.key].random_password}@${var.host_name}:5432/${each.value.databases[0]}?sslmode=require"
    },
    each.key == "dagster" ? {
      storage_url = "postgresql://${each.value.login}:${ephemeral.aws_secretsmanager_random_password.service[each.key].random_password}@${var.host_name}:5432/dagster?sslmode=require"
    } : {},
    each.key == "mlflow" ? {
      auth_url = "postgresql://${each.value.login}:${ephemeral.aws_secretsmanager_random_password.service[each.key].random_password}@${var.host_name}:5432/mlflow_auth?sslmode=require"
    } : {},
  ))
}

# --- instance --------------------------------------------------------------------------------

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-timescaledb"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

# Session Manager replaces SSH: no key pair, no port 22.
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "read_secret" {
  statement {
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [aws_secretsmanager_secret.database.arn],
      [for secret in aws_secretsmanager_secret.service : secret.arn],
    )
  }
}

resource "aws_iam_role_policy" "read_secret" {
  name   = "read-database-secret"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.read_secret.json
}

resource "aws_iam_instance_profile" "this" {
  name = "${var.name}-timescaledb"
  role = aws_iam_role.instance.name
}

resource "aws_ebs_volume" "data" {
  availability_zone = var.availability_zone
  size              = var.volume_size_gb
  type              = "gp3"
  encrypted         = true

  tags = {
    Name   = "${var.name}-timescaledb-data"
    Backup = local.backup_tag
  }
}

resource "aws_instance" "this" {
  ami                    = data.aws_ssm_parameter.ubuntu.insecure_value
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [var.security_group_id]
  iam_instance_profile   = aws_iam_instance_profile.this.name

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 20
    encrypted   = true
  }

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    region      = data.aws_region.current.name
    secret_arn  = aws_secretsmanager_secret.database.arn
    volume_id   = aws_ebs_volume.data.id
    pg_major    = local.pg_major
    db_user     = local.db_user
    databases   = local.databases
    client_cidr = var.client_cidr
    services = {
      for key, service in local.services : key => merge(service, {
        secret_arn = aws_secretsmanager_secret.service[key].arn
      })
    }
  })

  tags = {
    Name = "${var.name}-timescaledb"
  }

  # A newer Ubuntu AMI must not replace the database server on an unrelated apply.
  lifecycle {
    ignore_changes = [ami]
  }

  depends_on = [aws_secretsmanager_secret_version.database, aws_secretsmanager_secret_version.service]
}

resource "aws_volume_attachment" "data" {
  device_name                    = "/dev/sdf"
  volume_id                      = aws_ebs_volume.data.id
  instance_id                    = aws_instance.this.id
  stop_instance_before_detaching = true
}

# --- backups ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "assume_dlm" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dlm" {
  name               = "${var.name}-timescaledb-snapshots"
  assume_role_policy = data.aws_iam_policy_document.assume_dlm.json
}

resource "aws_iam_role_policy_attachment" "dlm" {
  role       = aws_iam_role.dlm.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}

# Crash-consistent snapshots: data and WAL share the volume, so PostgreSQL recovers from one the
# way it recovers from a power cut.
resource "aws_dlm_lifecycle_policy" "data" {
  description        = "Daily snapshots of the TimescaleDB data volume"
  execution_role_arn = aws_iam_role.dlm.arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags = {
      Backup = local.backup_tag
    }

    schedule {
      name = "daily"

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = ["03:00"]
      }

      retain_rule {
        count = var.snapshot_retention
      }

      copy_tags = true
    }
  }
}
