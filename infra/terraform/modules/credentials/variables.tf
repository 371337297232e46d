variable "name" {
  description = "Prefix of the secret names."
  type        = string
}

variable "database_host" {
  description = "DNS name of the database server, written into the connection URLs."
  type        = string
}

variable "owner_role" {
  description = "Login role owning the hub database (runs migrations)."
  type        = string
}

variable "services" {
  description = "Per service: login role, group role and databases (the first is its url key)."
  type = map(object({
    login     = string
    group     = string
    databases = list(string)
  }))
}

variable "recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once)."
  type        = number
}

variable "password_version" {
  description = "Increment to store new generated passwords (README: rotating the passwords)."
  type        = number
}
