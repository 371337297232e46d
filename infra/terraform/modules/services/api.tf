# The HTTP API (`llmhub serve`): OTLP and contract events in, marts and analytics out. Two tasks
# or more: quota state lives in PostgreSQL (api.quota_buckets), so every task enforces the same
# per-tenant limits. It logs in as its own service login (svc_api, member of llmhub_api:
# migrations 0007 and 0010), never as the owner; row-level security does the tenant filtering.
resource "aws_ecs_task_definition" "api" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.services.api.cpu
  memory                   = local.services.api.memory
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name      = "api"
    image     = var.hub_image
    essential = true
    command   = ["llmhub", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
    environment = concat(local.hub_environment, [
      { name = "LLMHUB_API_JWKS_URL", value = var.api_jwks_url },
      { name = "LLMHUB_API_JWT_ISSUER", value = var.api_jwt_issuer },
      { name = "LLMHUB_API_JWT_AUDIENCE", value = var.api_jwt_audience },
    ])
    secrets = [
      { name = "LLMHUB_DATABASE_URL", valueFrom = "${var.service_secret_arns["api"]}:url::" },
      { name = "LLMHUB_API_DATABASE_URL", valueFrom = "${var.service_secret_arns["api"]}:url::" },
    ]
    logConfiguration = local.log_configuration["api"]
    portMappings     = [{ containerPort = 8080, protocol = "tcp" }]
  }])
}

resource "aws_lb_target_group" "api" {
  name                 = "${var.name}-api"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path    = "/healthz"
    matcher = "200"
  }
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 20

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  condition {
    host_header {
      values = [var.api_host]
    }
  }
}

resource "aws_ecs_service" "api" {
  name                              = "api"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.api.arn
  desired_count                     = var.api_desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 60

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.api_security_group_ids
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener_rule.api]
}
