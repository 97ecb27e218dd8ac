"""Built-in attribute heads (``linear``, ``mlp``, ``multilabel``), registered through the public
``register_heads`` hook like a third-party plugin's.

May import: the public ``fashion`` names and ``fashion.contract``; nothing in the core imports
this package (the plugin manager loads it by name). Exports nothing: each module registers its
heads.
"""
