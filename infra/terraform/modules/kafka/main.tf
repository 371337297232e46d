# A provisioned MSK cluster speaking PLAINTEXT to clients: the hub's Kafka client has no TLS or SASL
# settings, so encryption in transit stops at the VPC boundary (brokers encrypt between
# themselves, data at rest is KMS-encrypted) and the security groups decide who connects.

locals {
  broker_count = var.brokers_per_az * length(var.subnet_ids)
  # Three copies where there are three brokers; a two-broker cluster keeps two.
  replication_factor = min(3, local.broker_count)
  min_insync         = max(1, local.replication_factor - 1)
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-kafka"
  kafka_versions = [var.kafka_version]

  # Topics come from the event contract (llmhub.contract.topics); a misspelt topic must fail
  # rather than appear with default settings.
  server_properties = <<-EOT
    auto.create.topics.enable=false
    default.replication.factor=${local.replication_factor}
    min.insync.replicas=${local.min_insync}
    offsets.topic.replication.factor=${local.replication_factor}
    transaction.state.log.replication.factor=${local.replication_factor}
    transaction.state.log.min.isr=${local.min_insync}
    unclean.leader.election.enable=false
  EOT

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "brokers" {
  name              = "/msk/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_msk_cluster" "this" {
  cluster_name           = "${var.name}-kafka"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = local.broker_count

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.subnet_ids
    security_groups = [var.security_group_id]

    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  client_authentication {
    unauthenticated = true
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "PLAINTEXT"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers.name
      }
    }
  }
}
