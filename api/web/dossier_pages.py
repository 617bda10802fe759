"""Dossiers: search (accent-insensitive, with filters) and one dossier's view."""

from fastapi import FastAPI

from api.web.pages import placeholder
from api.web.security import WebState


def add_routes(app: FastAPI, state: WebState) -> None:
    placeholder(app, "/dossiers")
    placeholder(app, "/search")
