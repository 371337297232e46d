resource "aws_s3_bucket" "artifacts" {
  bucket_prefix = "${var.name}-mlflow-"
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# The registry's model versions point at these objects: keep overwritten or deleted ones a while.
resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "artifacts" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

# Clients log artifacts through the server (it proxies them to S3), so only this task needs
# bucket access.
resource "aws_ecs_task_definition" "mlflow" {
  family                   = "${var.name}-mlflow"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.services.mlflow.cpu
  memory                   = local.services.mlflow.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.mlflow.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name      = "mlflow"
    image     = var.mlflow_image
    essential = true
    # MLflow's basic-auth app: every API and UI request needs a user of its user store
    # (database mlflow_auth); the store's location can only come from its ini file, written at
    # start from the injected secret. The administrator is created on first start from
    # MLFLOW_AUTH_ADMIN_*; default_permission READ lets signed-in users read every experiment.
    entryPoint = ["sh", "-c"]
    command = [join(" && ", [
      "printf '[mlflow]\\ndefault_permission = READ\\ndatabase_uri = %s\\n' \"$MLFLOW_AUTH_DATABASE_URI\" > /tmp/basic_auth.ini",
      "exec mlflow server --app-name basic-auth --host 0.0.0.0 --port 5000",
    ])]
    environment = [
      { name = "MLFLOW_ARTIFACTS_DESTINATION", value = "s3://${aws_s3_bucket.artifacts.bucket}/artifacts" },
      # MLflow rejects Host headers it does not know (DNS-rebinding protection); /health is exempt.
      { name = "MLFLOW_SERVER_ALLOWED_HOSTS", value = var.mlflow_host },
      { name = "MLFLOW_AUTH_CONFIG_PATH", value = "/tmp/basic_auth.ini" },
      { name = "AWS_DEFAULT_REGION", value = var.aws_region },
    ]
    secrets = [
      { name = "MLFLOW_BACKEND_STORE_URI", valueFrom = "${var.service_secret_arns["mlflow"]}:url::" },
      { name = "MLFLOW_AUTH_DATABASE_URI", valueFrom = "${var.service_secret_arns["mlflow"]}:mlflow_auth_url::" },
      { name = "MLFLOW_AUTH_ADMIN_USERNAME", valueFrom = "${var.mlflow_auth_secret_arn}:admin_username::" },
      { name = "MLFLOW_AUTH_ADMIN_PASSWORD", valueFrom = "${var.mlflow_auth_secret_arn}:admin_password::" },
      { name = "MLFLOW_FLASK_SERVER_SECRET_KEY", valueFrom = "${var.mlflow_auth_secret_arn}:flask_secret_key::" },
    ]
    logConfiguration = local.log_configuration["mlflow"]
    portMappings     = [{ containerPort = 5000, protocol = "tcp" }]
  }])
}

resource "aws_ecs_service" "mlflow" {
  name                              = "mlflow"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.mlflow.arn
  desired_count                     = 1
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 120

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.mlflow_security_group_id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.mlflow.arn
    container_name   = "mlflow"
    container_port   = 5000
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener_rule.mlflow]
}
