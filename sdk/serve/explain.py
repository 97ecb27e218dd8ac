"""What the model sees: the box of every view each cropper cuts from an image (``/v1/explain``).

Every cropper returns :class:`fashion.View` objects with ``box`` (left, top, right, bottom) in
the source image, so the page can draw the full image, the center crop and the box detector's
crops on the photo. :func:`cropper_views` is the one place the server reaches the croppers.
"""

from __future__ import annotations

from typing import Any

import torch


def cropper_views(predictor: Any, image: Any) -> dict[str, Any]:
    """Per view name: the cropper, its output size, and each cut's box and note on ``image``."""
    croppers = predictor.model.croppers
    width, height = image.size
    views: dict[str, Any] = {}
    with torch.inference_mode():
        for view, cropper in croppers.items():
            cuts = cropper.crop(image)
            views[view] = {
                "cropper": getattr(cropper, "component_name", type(cropper).__name__),
                "size": list(cuts[0].image.size) if cuts else None,
                "boxes": [list(c.box) if c.box is not None else [0, 0, width, height] for c in cuts],
                "notes": [c.note for c in cuts if c.note],
            }
    return {"width": width, "height": height, "views": views}
