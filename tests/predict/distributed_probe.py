"""A test plugin for the Ray tests: a cropper that records, in the file named by
``FASHION_TEST_LOAD_LOG``, the process id of every process that builds it (once per model load)."""

from __future__ import annotations

import os

from fashion import hookimpl
from tests.tiny_plugin import TinyCrop


class ProbeCrop(TinyCrop):
    name = "probe_crop"

    def __init__(self, options=None, *, assets=None):
        super().__init__(options, assets=assets)
        log = os.environ.get("FASHION_TEST_LOAD_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")


@hookimpl
def register_croppers(register):
    register(ProbeCrop)
