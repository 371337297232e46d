variable "name" {
  description = "Prefix of resource names."
  type        = string
}

variable "host_name" {
  description = "DNS name clients use for the server (written into the connection URLs)."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type (x86_64 or Graviton; the AMI follows)."
  type        = string
}

variable "volume_size_gb" {
  description = "Size of the data volume, in GiB."
  type        = number
}

variable "snapshot_retention" {
  description = "Daily snapshots of the data volume kept."
  type        = number
}

variable "subnet_id" {
  description = "Private subnet of the instance."
  type        = string
}

variable "availability_zone" {
  description = "Zone of var.subnet_id (the data volume must be in the same zone)."
  type        = string
}

variable "security_group_id" {
  description = "Security group of the instance."
  type        = string
}

variable "client_cidr" {
  description = "CIDR pg_hba.conf admits (the security groups narrow it further)."
  type        = string
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored."
  type        = number
}

variable "password_version" {
  description = "Increment to generate a new database password."
  type        = number
}
