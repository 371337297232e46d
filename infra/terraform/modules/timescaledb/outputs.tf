output "secret_arn" {
  description = "Secrets Manager secret holding username, password and the url, dagster_url and mlflow_url keys."
  value       = aws_secretsmanager_secret.database.arn
}

output "private_ip" {
  description = "Private IP of the TimescaleDB instance."
  value       = aws_instance.this.private_ip
}

output "instance_id" {
  description = "EC2 instance ID (for Session Manager sessions and port forwarding)."
  value       = aws_instance.this.id
}
