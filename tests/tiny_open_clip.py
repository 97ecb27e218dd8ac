"""A tiny randomly initialized open_clip model written the way open_clip publishes one: a folder
with ``open_clip_config.json`` (model_cfg + preprocess_cfg) and ``open_clip_model.safetensors``.
Its predictions mean nothing; it exercises the real loading path in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def tiny_config(image_size: int = 32, **preprocess: Any) -> dict[str, Any]:
    return {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {"image_size": image_size, "layers": 1, "width": 32, "head_width": 16,
                           "patch_size": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                         "layers": 1},
        },
        "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bilinear",
                           **preprocess},
    }


def write_tiny_open_clip(folder: Path, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """Write a random tiny open_clip model to ``folder`` (config + safetensors); returns it."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    config = config or tiny_config()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIP(**config["model_cfg"])
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
