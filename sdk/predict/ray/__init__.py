"""``fashion predict --engine ray``: prediction on Ray Data (optional ``ray`` extra).

``inputs`` finds the manifests, cuts them into parts and reads them as Arrow blocks; ``worker``
is the model each actor loads; ``engine`` plans the run, resumes it and writes the parts.

May import: ``fashion.predict`` and the layers below it; nothing imports it but the CLI.
Exports nothing here: ``engine.run_ray_predict`` is the entry point.
"""
