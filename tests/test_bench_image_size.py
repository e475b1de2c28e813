"""bench/image_size.py (run 36): W is trained as stage 0 trains it, and a feature that carries the
class attributes gives a W that classifies classes it never saw."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from image_size import train_w  # noqa: E402


def _attribute_features(sem, labels, mix, gen):
    """Features that are a fixed linear image (``mix``) of the class's attributes, plus noise."""
    return sem[labels] @ mix + 0.05 * torch.randn(len(labels), mix.shape[1], generator=gen)


def test_trained_w_transfers_to_unseen_classes():
    gen = torch.Generator().manual_seed(0)
    sem = torch.nn.functional.normalize(torch.rand(12, 8, generator=gen), dim=1)
    seen, unseen = torch.arange(8), torch.arange(8, 12)
    y = torch.randint(0, 8, (1600,), generator=gen)
    mix = 10 * torch.randn(8, 24, generator=gen)
    f0 = _attribute_features(sem, y, mix, gen)
    proj = train_w(f0, f0, y, sem[seen], seed=0)
    y_new = unseen[torch.randint(0, 4, (200,), generator=gen)]
    x_new = _attribute_features(sem, y_new, mix, gen)
    pred = unseen[(proj(x_new) @ sem[unseen].t()).argmax(1)]
    torch.manual_seed(1)
    untrained = unseen[(torch.nn.Linear(24, 8, bias=False)(x_new) @ sem[unseen].t()).argmax(1)]
    assert (pred == y_new).float().mean() > 0.6
    assert (pred == y_new).float().mean() > (untrained == y_new).float().mean() + 0.2
