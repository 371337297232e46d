output "owner_secret_arn" {
  description = "Secret of the hub database's owner: username, password, url."
  value       = aws_secretsmanager_secret.database.arn
}

output "service_secret_arns" {
  description = "Per service, the secret with its login: username, password, url and <database>_url keys."
  value       = { for key, secret in aws_secretsmanager_secret.service : key => secret.arn }
}

output "mlflow_auth_secret_arn" {
  description = "Secret with MLflow's admin_username, admin_password and flask_secret_key."
  value       = aws_secretsmanager_secret.mlflow_auth.arn
}

# Written (write-only) values exist once these versions are applied; the instance and the tasks
# that read them depend on this.
output "versions" {
  description = "Ids of the secret versions, to order readers after the writes."
  value = concat(
    [aws_secretsmanager_secret_version.database.id, aws_secretsmanager_secret_version.mlflow_auth.id],
    [for version in aws_secretsmanager_secret_version.service : version.id],
  )
}
