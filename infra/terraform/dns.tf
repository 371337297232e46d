# A private zone gives the database and the UIs stable names: the database URL in Secrets Manager
# names the host, so replacing the instance does not invalidate it.
resource "aws_route53_zone" "internal" {
  name = local.zone_name

  vpc {
    vpc_id = module.network.vpc_id
  }
}

resource "aws_route53_record" "timescaledb" {
  zone_id = aws_route53_zone.internal.zone_id
  name    = local.database_host
  type    = "A"
  ttl     = 60
  records = [module.timescaledb.private_ip]
}

resource "aws_route53_record" "ui" {
  for_each = toset([local.dagster_host, local.mlflow_host, local.api_host])

  zone_id = aws_route53_zone.internal.zone_id
  name    = each.key
  type    = "A"

  alias {
    name                   = module.services.alb_dns_name
    zone_id                = module.services.alb_zone_id
    evaluate_target_health = false
  }
}
