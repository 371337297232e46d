output "private_ip" {
  description = "Private IP of the TimescaleDB instance."
  value       = aws_instance.this.private_ip
}

output "instance_id" {
  description = "EC2 instance ID (for Session Manager sessions and port forwarding)."
  value       = aws_instance.this.id
}

output "databases" {
  description = "Databases on the server and their owners."
  value       = local.databases
}
