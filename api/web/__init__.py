"""The back-office web app: server-rendered pages (Jinja2 + htmx) for scanning staff, processors,
auditors and admins, on the same app as the REST API (`api/web/pages.py::add_web_routes`).
"""
