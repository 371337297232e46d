# Who may open the UIs. The Dagster webserver has no login of its own: the load balancer
# authenticates every request against a Cognito user pool (hosted sign-in page, MFA required,
# accounts created by an administrator only) before forwarding it. MLflow is not behind the
# load balancer's login, because the hub's tasks and the MLflow client call its REST API:
# it runs MLflow's own basic-auth app instead (mlflow.tf).

data "aws_caller_identity" "current" {}

resource "aws_cognito_user_pool" "ui" {
  name                     = "${var.name}-ui"
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  mfa_configuration        = "ON"
  deletion_protection      = "ACTIVE"

  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  software_token_mfa_configuration {
    enabled = true
  }

  password_policy {
    minimum_length    = 14
    require_lowercase = true
    require_uppercase = true
    require_numbers   = true
    require_symbols   = false
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }
}

# Domain prefixes are global across AWS accounts: the account id keeps this one unique.
resource "aws_cognito_user_pool_domain" "ui" {
  domain       = "${var.name}-${data.aws_caller_identity.current.account_id}"
  user_pool_id = aws_cognito_user_pool.ui.id
}

resource "aws_cognito_user_pool_client" "dagster" {
  name                                 = "${var.name}-dagster"
  user_pool_id                         = aws_cognito_user_pool.ui.id
  generate_secret                      = true
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_flows                  = ["code"]
  allowed_oauth_scopes                 = ["openid", "email"]
  supported_identity_providers         = ["COGNITO"]
  # The load balancer's fixed callback path.
  callback_urls = ["https://${var.dagster_host}/oauth2/idpresponse"]
}
