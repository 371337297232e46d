output "bootstrap_brokers" {
  description = "PLAINTEXT bootstrap servers (host:9092,...), the value of LLMHUB_KAFKA_BOOTSTRAP."
  value       = aws_msk_cluster.this.bootstrap_brokers
}

output "cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}
