{%- if cookiecutter.monitoring == "prometheus" -%}
"""What the server does with the champion's predictions besides answering: drift gauges."""

from ..monitoring.online import DriftMonitor as Observer

__all__ = ["Observer"]
{%- else -%}
"""What the server does with the champion's predictions besides answering: nothing.

A project rendered with monitoring=prometheus watches them for drift here.
"""

from __future__ import annotations

from ..inference import Array, Inputs
from .loading import LoadedModel
from .metrics import Metrics


class Observer:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def model_loaded(self, model: LoadedModel) -> None:
        pass

    def predicted(self, inputs: Inputs, predictions: Array) -> None:
        pass

    async def run(self) -> None:
        pass
{%- endif %}
