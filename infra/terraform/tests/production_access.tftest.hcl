# `terraform test` (offline: every AWS call is mocked) of who may reach what in production:
# the Dagster UI behind a Cognito login, MLflow behind its basic-auth app, one database login per
# service. tests/unit/test_infra.py runs it. The modules are tested one by one: the root module
# holds the credentials module, whose ephemeral password resources mock providers cannot serve
# (Terraform 1.11), not even behind override_module.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_ec2_instance_type" {
    defaults = { supported_architectures = ["x86_64"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { insecure_value = "ami-0123456789abcdef0" }
  }
  # Attributes the provider checks are ARNs need ARN-shaped mock values.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mock/1" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mock/1" }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mock/1/1" }
  }
  mock_resource "aws_cognito_user_pool" {
    defaults = { arn = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_mock" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/mock" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/mock" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mock:1" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock", bucket = "mock" }
  }
  mock_resource "aws_msk_cluster" {
    defaults = { arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/mock/1", bootstrap_brokers = "b-1:9092" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = { arn = "arn:aws:ecr:eu-west-1:123456789012:repository/mock", repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mock" }
  }
  mock_resource "aws_prometheus_workspace" {
    defaults = { prometheus_endpoint = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-mock/" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/mock" }
  }
}

variables {
  aws_region         = "eu-west-1"
  image_tag          = "test"
  ui_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/test"
}

run "dagster_ui_requires_a_cognito_login" {
  command = apply

  module {
    source = "./modules/services"
  }

  variables {
    name                       = "llmhub-test"
    vpc_id                     = "vpc-1"
    subnet_ids                 = ["subnet-1", "subnet-2"]
    alb_security_group_id      = "sg-alb"
    dagster_security_group_ids = ["sg-dagster"]
    mlflow_security_group_id   = "sg-mlflow"
    hub_image                  = "hub:test"
    mlflow_image               = "mlflow:test"
    ecr_repository_arns        = ["arn:aws:ecr:eu-west-1:123456789012:repository/hub"]
    migration_secret_arn       = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:owner"
    mlflow_auth_secret_arn     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-auth"
    service_secret_arns = {
      ingest  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ingest"
      api     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api"
      dagster = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster"
      mlflow  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow"
    }
    kafka_bootstrap        = "b-1:9092"
    mlflow_host            = "mlflow.llmhub-test.internal"
    dagster_host           = "dagster.llmhub-test.internal"
    api_host               = "api.llmhub-test.internal"
    api_security_group_ids = ["sg-api"]
    dagster_daemon_cpu     = 2048
    dagster_daemon_memory  = 8192
    log_retention_days     = 7
  }

  assert {
    condition = alltrue([
      for secret in jsondecode(aws_ecs_task_definition.api.container_definitions)[0].secrets :
      startswith(secret.valueFrom, var.service_secret_arns["api"])
    ])
    error_message = "the HTTP API must log in as its own service role (llmhub_api), never as the owner"
  }
  assert {
    condition     = aws_lb_listener.https.protocol == "HTTPS" && aws_lb_listener.https.certificate_arn == var.ui_certificate_arn
    error_message = "the UIs must be served over HTTPS with the given certificate"
  }
  assert {
    condition     = [for a in aws_lb_listener.https.default_action : a.type] == ["authenticate-cognito", "forward"]
    error_message = "every Dagster request must be authenticated before it is forwarded"
  }
  assert {
    condition     = aws_lb_listener.https.default_action[1].target_group_arn == aws_lb_target_group.dagster.arn
    error_message = "the authenticated default route must lead to Dagster"
  }
  assert {
    condition     = aws_lb_listener.http.default_action[0].type == "redirect" && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "plain HTTP must only redirect to HTTPS, never forward"
  }
  assert {
    condition     = aws_cognito_user_pool.ui.admin_create_user_config[0].allow_admin_create_user_only && aws_cognito_user_pool.ui.mfa_configuration == "ON"
    error_message = "UI accounts are created by an administrator, with MFA"
  }
  assert {
    condition     = aws_cognito_user_pool_client.dagster.callback_urls == toset(["https://dagster.llmhub-test.internal/oauth2/idpresponse"])
    error_message = "the Cognito client must call back to the load balancer on the Dagster host"
  }
  assert {
    condition     = aws_lb_listener_rule.mlflow.listener_arn == aws_lb_listener.https.arn
    error_message = "MLflow must be served on the HTTPS listener"
  }
  assert {
    condition     = strcontains(jsondecode(aws_ecs_task_definition.mlflow.container_definitions)[0].command[0], "mlflow server --app-name basic-auth")
    error_message = "MLflow must run its basic-auth app"
  }
  assert {
    condition = toset([for s in jsondecode(aws_ecs_task_definition.mlflow.container_definitions)[0].secrets : s.name]) == toset([
      "MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_ADMIN_USERNAME",
      "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
    ])
    error_message = "MLflow's credentials must come from Secrets Manager"
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_ecs_task_definition.mlflow.container_definitions)[0].secrets :
      startswith(s.valueFrom, var.service_secret_arns["mlflow"]) || startswith(s.valueFrom, var.mlflow_auth_secret_arn)
    ])
    error_message = "MLflow must log in to its databases as its own service role"
  }
  assert {
    condition = alltrue([
      for task in ["dagster-webserver", "dagster-daemon"] : alltrue([
        for s in jsondecode(aws_ecs_task_definition.dagster[task].container_definitions)[0].secrets :
        !startswith(s.valueFrom, var.migration_secret_arn)
      ])
    ])
    error_message = "Dagster must not log in as the database owner"
  }
  assert {
    condition = {
      for s in jsondecode(aws_ecs_task_definition.dagster["dagster-daemon"].container_definitions)[0].secrets : s.name => s.valueFrom
    }["LLMHUB_DATABASE_URL"] == "${var.service_secret_arns["dagster"]}:url::"
    error_message = "Dagster's LLMHUB_DATABASE_URL must be its own service login"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.migrate.container_definitions)[0].secrets[0].valueFrom == "${var.migration_secret_arn}:url::"
    error_message = "only the migration task logs in as the owner"
  }
  assert {
    condition     = startswith(output.mlflow_tracking_uri, "https://")
    error_message = "the hub must reach MLflow over HTTPS (its basic-auth password travels with every call)"
  }
}

run "one_database_login_per_service" {
  command = apply

  module {
    source = "./modules/timescaledb"
  }

  variables {
    name               = "llmhub-test"
    host_name          = "timescaledb.llmhub-test.internal"
    instance_type      = "m7i.large"
    volume_size_gb     = 20
    snapshot_retention = 1
    subnet_id          = "subnet-1"
    availability_zone  = "eu-west-1a"
    security_group_id  = "sg-db"
    client_cidr        = "10.40.0.0/16"
    owner_role         = "llmhub"
    owner_secret_arn   = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:owner"
    services = {
      ingest  = { login = "svc_ingest", group = "llmhub_ingest", databases = ["llmhub"] }
      api     = { login = "svc_api", group = "llmhub_api", databases = ["llmhub"] }
      dagster = { login = "svc_dagster", group = "llmhub_dagster", databases = ["llmhub", "dagster"] }
      mlflow  = { login = "svc_mlflow", group = "llmhub_mlflow", databases = ["mlflow", "mlflow_auth"] }
    }
    service_secret_arns = {
      ingest  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ingest"
      api     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:api"
      dagster = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster"
      mlflow  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow"
    }
    secret_version_ids = []
  }

  assert {
    condition = output.databases == {
      llmhub      = "llmhub"
      dagster     = "svc_dagster"
      mlflow      = "svc_mlflow"
      mlflow_auth = "svc_mlflow"
    }
    error_message = "the hub database belongs to the migration role, every other one to its service"
  }
  assert {
    condition = alltrue([
      for key, arn in var.service_secret_arns :
      strcontains(local.setup_script, "set_login_password ${var.services[key].login} \"${arn}\"")
    ])
    error_message = "every service login must get its password from its own secret"
  }
  assert {
    condition = alltrue([
      for service in var.services :
      strcontains(local.setup_script, "grant ${service.group} to ${service.login};")
    ])
    error_message = "every service login must join its group role (migration 0007)"
  }
  assert {
    condition = alltrue([
      for db in ["dagster", "mlflow", "mlflow_auth"] :
      strcontains(local.setup_script, "revoke connect on database ${db} from public")
    ])
    error_message = "a service's own database must be closed to the other services"
  }
  assert {
    condition     = strcontains(local.setup_script, "hostssl all llmhub,svc_api,svc_dagster,svc_ingest,svc_mlflow 10.40.0.0/16 scram-sha-256")
    error_message = "only the hub's roles may log in, over TLS with SCRAM"
  }
  assert {
    condition     = !strcontains(local.setup_script, "superuser")
    error_message = "no role of the hub is a superuser"
  }
}
