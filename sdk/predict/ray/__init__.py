"""``fashion predict --engine ray``: prediction on Ray Data (optional ``ray`` extra).

``inputs`` finds the manifests, cuts them into parts and reads them as Arrow blocks; ``worker``
is the model each actor loads; ``engine`` plans the run, resumes it and writes the parts.

May import: ``fashion.predict`` and the layers below it; nothing imports it but the CLI.
Exports ``predict_dataset`` (a Ray Dataset of products in, predictions out) and
``run_ray_predict`` (``fashion predict --engine ray``); Ray itself is imported when they run.
"""

from __future__ import annotations

from fashion.predict.ray.engine import predict_dataset, run_ray_predict

__all__ = ["predict_dataset", "run_ray_predict"]
