"""Predictions off the event loop, merged across concurrent requests.

Requests put their inputs on a queue and await the answer. One worker task takes
everything that is waiting (up to `max_rows`), runs one prediction per model (in a
dedicated thread, or on the loop when it is a few rows) and hands each request its rows
back. Under load one call serves many requests; alone, a request waits for nothing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..artifact import LoadedModel
from ..inference import Array, Inputs

Result = tuple[Array, Array | None]
# Up to this many rows are predicted on the event loop: for a small batch the hop to the
# prediction thread and back (and its GIL handoffs) costs more than the prediction.
INLINE_ROWS = 64


@dataclass
class _Job:
    model: LoadedModel
    inputs: Inputs
    future: asyncio.Future[Result]


def _merge(batch: list[Inputs]) -> Inputs:
    if len(batch) == 1:
        return batch[0]
    numeric = np.vstack([inputs.numeric for inputs in batch])
    categorical = [
        [value for inputs in batch for value in inputs.categorical[column]]
        for column in range(len(batch[0].categorical))
    ]
    return Inputs(numeric=numeric, categorical=categorical)


def predict_together(model: LoadedModel, batch: list[Inputs]) -> list[Result]:
    """One prediction for several requests' rows, split back per request."""
    predictions, probabilities = model.predictor.predict(_merge(batch))
    results: list[Result] = []
    start = 0
    for inputs in batch:
        end = start + inputs.rows
        part = None if probabilities is None else probabilities[start:end]
        results.append((predictions[start:end], part))
        start = end
    return results


class Batcher:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False)

    async def predict(self, model: LoadedModel, inputs: Inputs) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(model, inputs, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            rows = jobs[0].inputs.rows
            while not self._queue.empty() and rows < self.max_rows:
                job = self._queue.get_nowait()
                jobs.append(job)
                rows += job.inputs.rows
            # jobs for one model object (a reload or a canary makes several) go together
            by_model: dict[int, list[_Job]] = {}
            for job in jobs:
                by_model.setdefault(id(job.model), []).append(job)
            for group in by_model.values():
                await self._answer(loop, group)

    async def _answer(self, loop: Any, group: list[_Job]) -> None:
        batch = [job.inputs for job in group]
        try:
            if sum(inputs.rows for inputs in batch) <= INLINE_ROWS:
                results = predict_together(group[0].model, batch)
            else:
                results = await loop.run_in_executor(
                    self._executor, predict_together, group[0].model, batch
                )
        except Exception as error:
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, result in zip(group, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
