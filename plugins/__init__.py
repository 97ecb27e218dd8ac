"""Built-in plugins: backbones (resnet, efficientnet, bert), croppers (full, center, box and its
detector training), fusions (concat, mean, gated, late), registered through the public hooks.

May import: the public ``fashion`` names, ``fashion.contract`` and ``fashion.data``'s helpers for
plugins; nothing in the core imports this package (the plugin manager loads it by name).
Exports nothing: each module registers its components.
"""
