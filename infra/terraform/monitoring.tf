# Prometheus in production: an Amazon Managed Service for Prometheus workspace holding the same
# alert rules as the local stack (infra/prometheus/*.rules.yml, tested with promtool). The
# ingester's metrics reach it by remote write from a collector beside the ingester, e.g. a
# Prometheus in agent mode (or the ADOT collector) scraping `llmhub ingest --follow
# --metrics-port 9464` and the Dagster runs' textfile, with SigV4 to the workspace's
# remote-write endpoint (output prometheus_remote_write_url). See README.
resource "aws_prometheus_workspace" "this" {
  alias = local.name
}

resource "aws_prometheus_rule_group_namespace" "ingestion" {
  for_each = fileset("${path.module}/../prometheus", "*.rules.yml")

  name         = trimsuffix(each.value, ".rules.yml")
  workspace_id = aws_prometheus_workspace.this.id
  data         = file("${path.module}/../prometheus/${each.value}")
}
