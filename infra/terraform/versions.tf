terraform {
  # 1.11 for write-only arguments: the database password goes to Secrets Manager without ever
  # being written to the state.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}
