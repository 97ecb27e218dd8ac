"""Prediction: the ``Predictor`` (``predictor``), the batch engine of ``fashion predict``
(``batch``: rejects, resume, output guard), precision selection (``precision``), int8
quantization (``quantize``), ONNX export and its runner (``export``, ``runtime``), the accuracy
gate of optimized paths and its record in the bundle (``gate``, ``artifacts``), the prefetch
thread (``prefetch``) and the record of what computed a product vector (``vectors``: the model
revision, read by ``fashion.search`` and written by the Ray engine); ``fashion.predict.ray``
runs the same engine on Ray Data.

May import: ``fashion.training`` (the gate's evaluation), ``fashion.registry`` and every layer
below; only ``fashion.predict.ray`` and the CLI import the Ray engine. Exports nothing here:
``fashion.Predictor`` is the entry point.
"""

from __future__ import annotations
