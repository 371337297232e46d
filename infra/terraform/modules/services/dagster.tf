resource "aws_ecs_task_definition" "dagster" {
  for_each = {
    dagster-webserver = ["dagster-webserver", "--host", "0.0.0.0", "--port", "3000", "--workspace", "workspace.yaml"]
    dagster-daemon    = ["dagster-daemon", "run", "--workspace", "workspace.yaml"]
  }

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.services[each.key].cpu
  memory                   = local.services[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name             = each.key
    image            = var.hub_image
    essential        = true
    command          = each.value
    environment      = local.hub_environment
    secrets          = local.hub_secrets
    logConfiguration = local.log_configuration[each.key]
    portMappings     = each.key == "dagster-webserver" ? [{ containerPort = 3000, protocol = "tcp" }] : []
  }])
}

resource "aws_ecs_service" "dagster_webserver" {
  name                              = "dagster-webserver"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.dagster["dagster-webserver"].arn
  desired_count                     = 1
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 180

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.dagster_security_group_ids
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.dagster.arn
    container_name   = "dagster-webserver"
    container_port   = 3000
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.http]
}

resource "aws_ecs_service" "dagster_daemon" {
  name            = "dagster-daemon"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.dagster["dagster-daemon"].arn
  desired_count   = 1
  launch_type     = "FARGATE"

  # Dagster supports exactly one daemon per instance: stop the old task before starting the new.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.dagster_security_group_ids
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}

# One-off schema migrations (`llmhub db migrate`): the only task that logs in as the owner of the
# hub database.
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${var.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.services.migrate.cpu
  memory                   = local.services.migrate.memory
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name             = "migrate"
    image            = var.hub_image
    essential        = true
    command          = ["llmhub", "db", "migrate"]
    secrets          = [{ name = "LLMHUB_DATABASE_URL", valueFrom = "${var.migration_secret_arn}:url::" }]
    logConfiguration = local.log_configuration["migrate"]
  }])
}
