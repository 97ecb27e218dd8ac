"""The plugin contract: hook specs, every component kind and its base class, typed options,
the contract's enforcement, the plugin manager and ``build_component``.

May import: ``fashion.errors``, ``fashion._util``. Everything else builds on it.
Exports the names a plugin needs; ``fashion`` re-exports the common ones.
"""

from __future__ import annotations
