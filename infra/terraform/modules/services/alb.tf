# Internal only: reachable from the VPC and from var.client_cidr_blocks (VPN, peering), never from
# the internet. HTTPS only (port 80 redirects): Dagster is the default route, behind the Cognito
# login (auth.tf); MLflow answers on its own host name with its own basic-auth login.
resource "aws_lb" "this" {
  name                       = "${var.name}-ui"
  internal                   = true
  load_balancer_type         = "application"
  security_groups            = [var.alb_security_group_id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
}

resource "aws_lb_target_group" "dagster" {
  name                 = "${var.name}-dagster"
  port                 = 3000
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path    = "/server_info"
    matcher = "200"
  }
}

resource "aws_lb_target_group" "mlflow" {
  name                 = "${var.name}-mlflow"
  port                 = 5000
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  # /health is the one route MLflow's basic-auth app leaves open.
  health_check {
    path    = "/health"
    matcher = "200"
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

# The load balancer may only authenticate on an HTTPS listener.
resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.ui_certificate_arn

  default_action {
    type  = "authenticate-cognito"
    order = 1

    authenticate_cognito {
      user_pool_arn              = aws_cognito_user_pool.ui.arn
      user_pool_client_id        = aws_cognito_user_pool_client.dagster.id
      user_pool_domain           = aws_cognito_user_pool_domain.ui.domain
      on_unauthenticated_request = "authenticate"
      session_timeout            = 28800
    }
  }

  default_action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.dagster.arn
  }
}

resource "aws_lb_listener_rule" "mlflow" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mlflow.arn
  }

  condition {
    host_header {
      values = [var.mlflow_host]
    }
  }
}
