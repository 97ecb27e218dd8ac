"""Files a training run writes for people to share follow the umask (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

from fashion.training import Trainer


def test_checkpoints_cache_chunks_and_bundle_follow_the_umask(tiny, train_config, tmp_path):
    old = os.umask(0o022)
    try:
        config = train_config(epochs=2, checkpoint_every=2, freeze=["backbones"], save_bundle=True,
                              cache_dir=tmp_path / "cache", modality_dropout=0.5)
        result = Trainer(None, config).fit()
    finally:
        os.umask(old)
    files = [p for root in (tmp_path / "run", tmp_path / "cache") for p in root.rglob("*")
             if p.is_file()]
    assert any(p.name.startswith("chunk-") for p in files)
    assert any(p.suffix == ".safetensors" and "checkpoint" in str(p) for p in files) or any(
        "checkpoint" in p.name for p in files)
    assert result.bundle_path is not None and any(result.bundle_path.rglob("*.safetensors"))
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {m for m in modes.values()} == {0o644}, {p: oct(m) for p, m in modes.items() if m != 0o644}
