"""Prediction: the ``Predictor``, the batch engine of ``fashion predict`` (rejects, resume,
output guard), precision selection, int8 quantization, ONNX export and its runner, the
accuracy gate of optimized paths and the prefetch thread; ``fashion.predict.ray`` runs the same
engine on Ray Data.

May import: ``fashion.training`` (the gate's evaluation), ``fashion.registry`` and every layer
below. Exports ``Predictor`` and ``ProductPrediction``.
"""

from __future__ import annotations
