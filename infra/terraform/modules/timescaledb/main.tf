# TimescaleDB is not offered on RDS: PostgreSQL 17 from the PGDG repository and TimescaleDB from
# Timescale's own packages on one EC2 instance. The cluster (data and configuration) lives on a
# separate encrypted volume with daily snapshots, so the instance itself is disposable.

locals {
  pg_major   = "17"
  arch       = contains(data.aws_ec2_instance_type.this.supported_architectures, "arm64") ? "arm64" : "amd64"
  backup_tag = "${var.name}-timescaledb"

  # database -> owner. The hub's schema belongs to the migration role; the others to the one
  # service that uses them (Dagster's run storage, MLflow's tracking and user stores).
  databases = merge(
    { llmhub = var.owner_role },
    [for service in var.services : { for db in service.databases : db => service.login if db != "llmhub" }]...
  )
}

data "aws_region" "current" {}

data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/${local.arch}/hvm/ebs-gp3/ami-id"
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
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([var.owner_secret_arn], values(var.service_secret_arns))
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

# The first-boot setup script: server, per-service login roles and databases.
locals {
  setup_script = templatefile("${path.module}/user_data.sh.tftpl", {
    region      = data.aws_region.current.name
    secret_arn  = var.owner_secret_arn
    volume_id   = aws_ebs_volume.data.id
    pg_major    = local.pg_major
    db_user     = var.owner_role
    databases   = local.databases
    client_cidr = var.client_cidr
    services = {
      for key, service in var.services : key => merge(service, {
        secret_arn = var.service_secret_arns[key]
      })
    }
  })
}

# The instance reads the passwords at first boot: only once they are written.
resource "terraform_data" "secrets_written" {
  input = var.secret_version_ids
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

  user_data = local.setup_script

  tags = {
    Name = "${var.name}-timescaledb"
  }

  # A newer Ubuntu AMI must not replace the database server on an unrelated apply.
  lifecycle {
    ignore_changes = [ami]
  }

  depends_on = [terraform_data.secrets_written]

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
