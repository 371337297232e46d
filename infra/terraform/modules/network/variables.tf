variable "name" {
  description = "Prefix of resource names."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
}

variable "azs" {
  description = "Availability zones; one public and one private subnet in each."
  type        = list(string)
}
