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

variable "owner_role" {
  description = "Login role that owns the hub database and runs the migrations."
  type        = string
}

variable "owner_secret_arn" {
  description = "Secret with the owner's password (password key)."
  type        = string
}

variable "services" {
  description = "Per service: its login role, the group role it joins (migration 0007) and its databases (the first one is its main one; a database other than llmhub is owned by the service)."
  type = map(object({
    login     = string
    group     = string
    databases = list(string)
  }))
}

variable "service_secret_arns" {
  description = "Per service, the secret with its login's password (password key)."
  type        = map(string)
}

variable "secret_version_ids" {
  description = "Versions of the secrets the setup script reads (the instance is created after them)."
  type        = list(string)
}
