# Internal only: reachable from the VPC and from var.client_cidr_blocks (VPN, peering), never from
# the internet. Dagster is the default route; MLflow answers on its own host name.
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
    type             = "forward"
    target_group_arn = aws_lb_target_group.dagster.arn
  }
}

resource "aws_lb_listener_rule" "mlflow" {
  listener_arn = aws_lb_listener.http.arn
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
