"""The plugin contract: hook specs (``hookspecs``), every component kind in one table
(``kinds``) and its base class (``base``, ``backbones``, ``components``, ``training``), the
contract's enforcement (``enforce``), the plugin manager and ``build_component`` (``manager``).

May import: ``fashion.data`` (image helpers for the croppers' options), ``fashion.errors``,
``fashion._util``. Exports nothing here: ``fashion`` re-exports the names a plugin needs
(``hookimpl``, the base classes, ``build_component``).
"""

from __future__ import annotations
