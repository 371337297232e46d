variable "name" {
  description = "Prefix of resource names."
  type        = string
}

variable "kafka_version" {
  description = "MSK Apache Kafka version."
  type        = string
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
}

variable "brokers_per_az" {
  description = "Brokers in each subnet's availability zone."
  type        = number
}

variable "volume_size_gb" {
  description = "EBS storage per broker, in GiB."
  type        = number
}

variable "subnet_ids" {
  description = "Private subnets, each in a different availability zone."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the brokers."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch retention of broker logs, in days."
  type        = number
}
