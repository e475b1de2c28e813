"""Validation ZSL of each branch alone, and of the fused scores, for trained checkpoints on a CUB
folder's validation classes (the trainer's val_zsl_mca_<branch>, for runs trained before it
logged them). Reads no part box.

    SGMA_SHARED_DATA=../shared/data python bench/branch_zsl.py CUB_ROOT RUN/best.pt [MORE.pt ...]
"""
import sys

import numpy as np
import torch

from sgma.engine.checkpoint import load_checkpoint, model_from_checkpoint
from sgma.engine.data.registry import load_dataset
from sgma.engine.extract import extract
from sgma.engine.metrics import mean_class_accuracy

torch.set_num_threads(2)
root, paths = sys.argv[1], sys.argv[2:]
ds = load_dataset("cub", root, split="ps", fold=1)
for path in paths:
    state = load_checkpoint(path)
    model = model_from_checkpoint(state)
    val = [ds.class_names.index(n) for n in state["val_classes"]]
    idx = [i for i in ds.split.trainval if ds.labels[i] in set(val)]
    out = extract(model, ds, idx)
    cand = np.asarray(val)
    sem = np.asarray(ds.semantics, dtype=np.float32)[cand]
    row = {"fused": mean_class_accuracy(out["labels"], cand[out["scores"][:, cand].argmax(1)])}
    for b, block in zip(model.branch_names, np.split(out["cct"], len(model.branch_names), axis=1)):
        row[b] = mean_class_accuracy(out["labels"], cand[(block @ sem.T).argmax(1)])
    print(path, f"{len(idx)} validation images:", ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
