# Every network path of the deployment, in one place. Groups start with no rules (Terraform drops
# AWS's default allow-all egress); each path below opens one port from one group to another, as an
# egress rule on the source and an ingress rule on the destination.

locals {
  security_groups = {
    alb          = "Internal load balancer in front of the Dagster and MLflow UIs"
    dagster      = "Dagster webserver and daemon tasks (runs execute in the daemon)"
    mlflow       = "MLflow tracking server tasks"
    api          = "HTTP API tasks (llmhub serve)"
    timescaledb  = "TimescaleDB server"
    kafka        = "MSK brokers"
    kafka_client = "Attach to anything that produces to or consumes from Kafka"
  }

  internal_paths = {
    alb_to_dagster         = { from = "alb", to = "dagster", port = 3000 }
    alb_to_mlflow          = { from = "alb", to = "mlflow", port = 5000 }
    dagster_to_alb         = { from = "dagster", to = "alb", port = 443 } # MLflow tracking API
    alb_to_api             = { from = "alb", to = "api", port = 8080 }
    api_to_timescaledb     = { from = "api", to = "timescaledb", port = 5432 }
    dagster_to_timescaledb = { from = "dagster", to = "timescaledb", port = 5432 }
    mlflow_to_timescaledb  = { from = "mlflow", to = "timescaledb", port = 5432 }
    kafka_client_to_kafka  = { from = "kafka_client", to = "kafka", port = 9092 }
  }

  # HTTPS to AWS APIs (ECR, Secrets Manager, CloudWatch Logs, S3, SSM) through the NAT gateway;
  # the database host also fetches packages, and Ubuntu's mirrors serve signed indexes over HTTP.
  # The load balancer calls Cognito's token and user-info endpoints to sign UI users in.
  internet_egress = {
    alb_https         = { group = "alb", port = 443 }
    dagster_https     = { group = "dagster", port = 443 }
    mlflow_https      = { group = "mlflow", port = 443 }
    api_https         = { group = "api", port = 443 }
    timescaledb_https = { group = "timescaledb", port = 443 }
    timescaledb_http  = { group = "timescaledb", port = 80 }
  }

  external_ingress = merge(
    { for cidr in var.client_cidr_blocks : "alb_${cidr}" => { group = "alb", cidr = cidr, port = 443 } },
    # Plain HTTP only to be redirected to HTTPS.
    { for cidr in var.client_cidr_blocks : "alb_http_${cidr}" => { group = "alb", cidr = cidr, port = 80 } },
    { for cidr in var.kafka_client_cidr_blocks : "kafka_${cidr}" => { group = "kafka", cidr = cidr, port = 9092 } },
  )
}

resource "aws_security_group" "this" {
  for_each = local.security_groups

  name        = "${local.name}-${replace(each.key, "_", "-")}"
  description = each.value
  vpc_id      = module.network.vpc_id

  tags = {
    Name = "${local.name}-${replace(each.key, "_", "-")}"
  }
}

resource "aws_vpc_security_group_egress_rule" "internal" {
  for_each = local.internal_paths

  security_group_id            = aws_security_group.this[each.value.from].id
  referenced_security_group_id = aws_security_group.this[each.value.to].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = "to ${each.value.to}"
}

resource "aws_vpc_security_group_ingress_rule" "internal" {
  for_each = local.internal_paths

  security_group_id            = aws_security_group.this[each.value.to].id
  referenced_security_group_id = aws_security_group.this[each.value.from].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = "from ${each.value.from}"
}

resource "aws_vpc_security_group_egress_rule" "internet" {
  for_each = local.internet_egress

  security_group_id = aws_security_group.this[each.value.group].id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "to the internet through NAT"
}

resource "aws_vpc_security_group_ingress_rule" "external" {
  for_each = local.external_ingress

  security_group_id = aws_security_group.this[each.value.group].id
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "from ${each.value.cidr}"
}

# The brokers' network interfaces share one group; let them reach each other and nothing else.
resource "aws_vpc_security_group_ingress_rule" "kafka_self" {
  security_group_id            = aws_security_group.this["kafka"].id
  referenced_security_group_id = aws_security_group.this["kafka"].id
  ip_protocol                  = "-1"
  description                  = "between brokers"
}

resource "aws_vpc_security_group_egress_rule" "kafka_self" {
  security_group_id            = aws_security_group.this["kafka"].id
  referenced_security_group_id = aws_security_group.this["kafka"].id
  ip_protocol                  = "-1"
  description                  = "between brokers"
}
