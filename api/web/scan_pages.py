"""The scanning station: pick a scanner, start a scan, watch pages and batches arrive."""

from fastapi import FastAPI

from api.web.pages import placeholder
from api.web.security import WebState


def add_routes(app: FastAPI, state: WebState) -> None:
    placeholder(app, "/scan")
