"""The review queue: pages the machine could not match, codes read with low confidence."""

from fastapi import FastAPI

from api.web.pages import placeholder
from api.web.security import WebState


def add_routes(app: FastAPI, state: WebState) -> None:
    placeholder(app, "/review")
