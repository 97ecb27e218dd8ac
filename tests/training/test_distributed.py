"""The same trainer under torchrun: 2 processes (gloo on CPU), DDP, rank 0 writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from fashion import FashionModel
from tests.tiny_plugin import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from pathlib import Path

from fashion.contract.manager import register_plugin
from tests import tiny_plugin

register_plugin(tiny_plugin, name="tests.tiny_plugin")
from fashion.training import TrainConfig, Trainer

config = TrainConfig.parse(json.loads(sys.argv[1]))
losses = []
trainer = Trainer(None, config, callbacks=[lambda s: losses.append(float(sum(s.losses.values())))])
result = trainer.fit()
model = trainer.model
out = {
    "world": trainer.world_size,
    "epoch_loss": result.history[-1]["loss"],
    "steps": losses,
    "params": sum(p.numel() for p in model.parameters()),
    "checksum": [float(p.double().sum()) for p in model.parameters()],
}
Path(sys.argv[2], f"rank{os.environ['RANK']}.json").write_text(json.dumps(out))
"""


def test_torchrun_two_processes(tiny, tmp_path, catalog):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    config = {
        "model": TINY_SPEC,
        "datasets": [{"name": "colors", "path": str(catalog["colors"])},
                     {"name": "categories", "path": str(catalog["categories"])}],
        "epochs": 1,
        "batch_size": 8,
        "optimizer": {"lr_backbone": 0.03, "lr_head": 0.03, "weight_decay": 0.0},
        "val_fraction": 0.2,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
        "save_bundle": False,
        "device": "cpu",
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "FASHION_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), json.dumps(config), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # gradients were all-reduced: same weights
    assert ranks[0]["params"] == sum(p.numel() for p in FashionModel(TINY_SPEC).parameters())
    first = ranks[0]
    assert math.isfinite(first["epoch_loss"])
    assert len(first["steps"]) == 12  # the single-process schedule: 48 + 48 rows, batches of 8
    assert sum(first["steps"][-3:]) < sum(first["steps"][:3])  # the loss went down
    run = tmp_path / "run"
    assert (run / "checkpoints" / "checkpoint.json").is_file() and (run / "history.json").is_file()
    assert len(list((run / "checkpoints").glob("model-*.safetensors"))) == 1  # one writer
    assert torch.isfinite(torch.tensor(json.loads((run / "history.json").read_text())[0]["loss"]))
