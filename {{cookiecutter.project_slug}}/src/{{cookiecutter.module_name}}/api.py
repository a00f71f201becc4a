{%- if cookiecutter.monitoring == "prometheus" -%}
"""The prediction API as uvicorn, the image and Kubernetes run it: the server with drift.

`serving/` answers requests and `monitoring/` measures drift; neither imports the other.
Here the drift monitor is given the champion's predictions to watch.
"""

from __future__ import annotations

from fastapi import FastAPI

from .monitoring.online import DriftMonitor
from .serving import app
from .serving.settings import ServeSettings


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    return app.create_app(settings, observer=DriftMonitor)
{%- else -%}
"""The prediction API as uvicorn, the image and Kubernetes run it.

A project rendered with monitoring=prometheus gives the server a drift monitor here.
"""

from __future__ import annotations

from fastapi import FastAPI

from .serving import app
from .serving.settings import ServeSettings


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    return app.create_app(settings)
{%- endif %}
