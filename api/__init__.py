"""REST API, staff web pages and the command line."""
