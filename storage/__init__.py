"""Object storage (the truth) and the SQL catalog (an index rebuilt from it)."""
