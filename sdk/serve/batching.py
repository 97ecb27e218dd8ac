"""Dynamic batching: concurrent requests are grouped into one ``Predictor.predict`` call.

Requests wait in a bounded queue. One asyncio task takes the oldest request, waits up to
``timeout`` for others to join it (or until ``max_batch_size`` products are gathered), and runs
the whole group as one forward in a worker thread, so the event loop keeps accepting requests.
While a batch runs, the next one gathers: under load, batches fill without waiting at all.

A request is never split: one with more products than ``max_batch_size`` runs as its own batch.
A request whose client gave up (timeout) before its batch started is dropped from the batch.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[list[Any], int], list[Any]]  # (products, top_k) -> one result per product


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` requests already; the client should retry later."""


@dataclass
class _Job:
    products: list[Any]
    top_k: int
    future: asyncio.Future[list[Any]]
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Groups concurrent :meth:`submit` calls into batches for ``predict`` (see module doc)."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        timeout_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # (products in the batch, seconds of the forward)
        self._pending: collections.deque[_Job] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: batches run one after the other on the model (which owns the device).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fashion-serve-batch")

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fashion-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(QueueFull("the server is shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, products: Sequence[Any], top_k: int) -> list[Any]:
        """Queue ``products`` and wait for their results (raises :class:`QueueFull`)."""
        if self._wakeup is None or not self.running:
            raise QueueFull("the batcher is not running")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are already waiting")
        job = _Job(list(products), top_k, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    async def _next_job(self, deadline: float | None) -> _Job | None:
        """The oldest live job; waits until ``deadline`` (``None``: forever) for one to come."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._pending:
                job = self._pending.popleft()
                if not job.future.done():  # a client that timed out cancelled its future
                    return job
            self._wakeup.clear()
            if deadline is None:
                await self._wakeup.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:  # noqa: UP041 - not builtin TimeoutError on 3.10
                return None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next_job(None)
            assert first is not None
            jobs, size = [first], len(first.products)
            deadline = loop.time() + self.timeout_s
            while size < self.max_batch_size:
                nxt = self._pending[0] if self._pending else None
                if nxt is not None and not nxt.future.done() and size + len(nxt.products) > self.max_batch_size:
                    break  # it would overflow the batch: it starts the next one
                job = await self._next_job(deadline)
                if job is None:
                    break
                if size + len(job.products) > self.max_batch_size:
                    self._pending.appendleft(job)
                    break
                jobs.append(job)
                size += len(job.products)
            jobs = [j for j in jobs if not j.future.done()]
            if not jobs:
                continue
            await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        products = [p for job in jobs for p in job.products]
        top_k = max(job.top_k for job in jobs)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.predict, products, top_k)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(jobs) > 1:  # one request's failure must not fail the others: run each alone
                for job in jobs:
                    await self._run([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(products), time.perf_counter() - started)
        start = 0
        for job in jobs:
            part = results[start:start + len(job.products)]
            start += len(job.products)
            if not job.future.done():
                job.future.set_result(part)
