"""Data-quality rules of the hub tables and the Great Expectations runner that checks them."""
