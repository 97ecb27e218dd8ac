"""The batcher alone: grouping, the bounded queue, unsplit large requests, isolated failures."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fashion.serve.batching import Batcher, QueueFull


class Recorder:
    """A predict function that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, products: list[Any], top_k: int) -> list[Any]:
        self.release.wait(10)
        if "bad" in products:
            raise ValueError("bad product")
        self.batches.append(list(products))
        return [f"{p}:{top_k}" for p in products]


async def _started(predict: Recorder, **options: Any) -> Batcher:
    batcher = Batcher(predict, **{"max_batch_size": 8, "timeout_s": 0.05, "max_queue": 16, **options})
    batcher.start()
    return batcher


def test_concurrent_requests_share_one_batch() -> None:
    async def main() -> list[Any]:
        predict = Recorder()
        batcher = await _started(predict)
        try:
            return [await asyncio.gather(*(batcher.submit([f"p{i}"], 3) for i in range(5))), predict.batches]
        finally:
            await batcher.stop()

    results, batches = asyncio.run(main())
    assert results == [[f"p{i}:3"] for i in range(5)]
    assert batches == [["p0", "p1", "p2", "p3", "p4"]]


def test_full_batches_and_unsplit_large_requests() -> None:
    async def main() -> list[list[Any]]:
        predict = Recorder()
        batcher = await _started(predict, max_batch_size=4)
        try:
            await asyncio.gather(
                batcher.submit(["a1", "a2", "a3"], 1),
                batcher.submit(["b1", "b2"], 1),  # would overflow a's batch: starts the next
                batcher.submit(["c1", "c2", "c3", "c4", "c5", "c6"], 1),  # larger than a batch
                batcher.submit(["d1"], 1),
            )
            return predict.batches
        finally:
            await batcher.stop()

    batches = asyncio.run(main())
    assert batches[0] == ["a1", "a2", "a3"]
    assert sorted(p for b in batches for p in b) == sorted(
        ["a1", "a2", "a3", "b1", "b2", "c1", "c2", "c3", "c4", "c5", "c6", "d1"])
    assert ["c1", "c2", "c3", "c4", "c5", "c6"] in batches  # never split
    assert all(len(b) <= 4 for b in batches if b[0] != "c1")


def test_bounded_queue_refuses_when_full() -> None:
    async def main() -> tuple[list[Any], list[list[Any]]]:
        predict = Recorder()
        predict.release.clear()  # the first batch blocks the model
        batcher = await _started(predict, max_batch_size=1, max_queue=2, timeout_s=0.0)
        try:
            first = asyncio.ensure_future(batcher.submit(["first"], 1))
            while batcher.depth:  # the batcher took it and is blocked in predict
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            waiting = [asyncio.ensure_future(batcher.submit([f"w{i}"], 1)) for i in range(2)]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFull, match="2 requests are already waiting"):
                await batcher.submit(["overflow"], 1)
            predict.release.set()
            return [await first, *(await asyncio.gather(*waiting))], predict.batches
        finally:
            await batcher.stop()

    results, batches = asyncio.run(main())
    assert results == [["first:1"], ["w0:1"], ["w1:1"]]
    assert batches == [["first"], ["w0"], ["w1"]]


def test_one_failing_request_does_not_fail_its_batch_mates() -> None:
    async def main() -> list[Any]:
        predict = Recorder()
        batcher = await _started(predict)
        try:
            return await asyncio.gather(batcher.submit(["ok1"], 2), batcher.submit(["bad"], 2),
                                        batcher.submit(["ok2"], 2), return_exceptions=True)
        finally:
            await batcher.stop()

    ok1, bad, ok2 = asyncio.run(main())
    assert ok1 == ["ok1:2"] and ok2 == ["ok2:2"]
    assert isinstance(bad, ValueError)


def test_cancelled_requests_are_skipped() -> None:
    async def main() -> list[list[Any]]:
        predict = Recorder()
        predict.release.clear()
        batcher = await _started(predict, max_batch_size=1, timeout_s=0.0)
        try:
            first = asyncio.ensure_future(batcher.submit(["first"], 1))
            await asyncio.sleep(0.05)
            gone = asyncio.ensure_future(batcher.submit(["gone"], 1))
            await asyncio.sleep(0.01)
            gone.cancel()  # its client timed out while it waited
            kept = asyncio.ensure_future(batcher.submit(["kept"], 1))
            predict.release.set()
            await first
            await kept
            return predict.batches
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [["first"], ["kept"]]
