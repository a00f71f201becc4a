"""What the server does with the champion's predictions besides answering.

The server calls an Observer; `api.py` chooses which (the drift monitor, where the
project has monitoring). This package defines only the interface and the one that does
nothing, so the server never imports the monitoring code.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry

from ..artifact import LoadedModel
from ..inference import Array, Inputs


class Observer(Protocol):
    def model_loaded(self, model: LoadedModel) -> None:
        """A new champion is being served."""

    def predicted(self, inputs: Inputs, predictions: Array) -> None:
        """The champion answered these rows (cheap: called on the event loop)."""

    async def run(self) -> None:
        """Background work for the server's lifetime."""


class NoObserver:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def model_loaded(self, model: LoadedModel) -> None:
        pass

    def predicted(self, inputs: Inputs, predictions: Array) -> None:
        pass

    async def run(self) -> None:
        pass
