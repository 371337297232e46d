output "secret_arn" {
  description = "Secrets Manager secret of the hub database's owner (migrations only): username, password, url."
  value       = aws_secretsmanager_secret.database.arn
}

output "service_secret_arns" {
  description = "Per service (ingest, api, dagster, mlflow) the secret with its own login: username, password, url (+ storage_url for dagster, auth_url for mlflow)."
  value       = { for key, secret in aws_secretsmanager_secret.service : key => secret.arn }
}

output "service_logins" {
  description = "Per service, its login role and the group role (migration 0007) it is a member of."
  value       = { for key, service in local.services : key => { login = service.login, group = service.group } }
}

output "private_ip" {
  description = "Private IP of the TimescaleDB instance."
  value       = aws_instance.this.private_ip
}

output "instance_id" {
  description = "EC2 instance ID (for Session Manager sessions and port forwarding)."
  value       = aws_instance.this.id
}
