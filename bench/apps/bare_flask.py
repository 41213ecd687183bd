"""A bare Flask route returning a small dict: the framework's own cost, nothing added."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello() -> dict:
    return {"message": "hello"}


@app.get("/health/live")
def live() -> dict:
    return {"status": "alive"}
