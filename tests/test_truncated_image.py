"""A JPEG cut after its header passes the load-time header check; the trainer decodes every
training and validation image before its first step and names the file (issue 16)."""
from __future__ import annotations

from pathlib import Path

import torch

from sgma.engine import events as ev
from sgma.engine.data.registry import load_dataset
from sgma.engine.trainer import Trainer

from fixtures_data import make_folder
from test_trainer import tiny_config


def test_truncated_jpeg_is_named_before_training(tmp_path):
    torch.set_num_threads(1)
    root = make_folder(tmp_path)
    ds = load_dataset("folder", str(root))
    victim = next(Path(it.path) for it in (ds.items[i] for i in ds.split.trainval) if it.path.endswith(".jpg"))
    import numpy as np
    from PIL import Image
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(victim, quality=95)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 3 // 5])        # header intact, scan data cut
    ds = load_dataset("folder", str(root))                # the header check at load lets it through
    events = list(Trainer(tiny_config(), tmp_path / "run", dataset=ds).run())
    failed = [e for e in events if isinstance(e, ev.Failed)]
    assert failed and str(victim) in failed[0].error and "cannot be read" in failed[0].error
    assert not any(isinstance(e, ev.Step) for e in events)
    assert failed[0].traceback in (None, "")
