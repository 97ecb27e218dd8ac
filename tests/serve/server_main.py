"""``python -m tests.serve.server_main serve MODEL ...``: the real ``fashion`` CLI with the tiny
test plugin registered first, so a subprocess server can load a tiny test bundle."""

from __future__ import annotations

import sys

from fashion.cli import main
from fashion.contract.manager import register_plugin
from tests import tiny_plugin

if __name__ == "__main__":
    register_plugin(tiny_plugin, name="tests.tiny_plugin")
    main(sys.argv[1:])
