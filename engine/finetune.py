"""Stage 1's first step when ``model.finetune_blocks`` > 0: fine-tune the attention CNN on the seen
classes before its channels are grouped (MA-CNN [31] groups the channels of a network fine-tuned
on the birds; the paper's one CNN is fine-tuned in every stage).

With the fixed EfficientNet-Lite0 cut at stride 16 (the ``cpu`` preset's attention CNN), its last
``n`` MBConv blocks are trained; everything below them is computed once per image. The classifier
is the network's own layers above the cut (ImageNet weights, fixed), global average pooling and a
linear map to the attributes, scored by cosine similarity at scale 10 against the training classes'
attributes (Eq. 9 with normalised features). First ``epochs`` epochs train the linear map alone,
then ``epochs`` epochs train it with the blocks (Adam; a random classifier's gradients would
otherwise reach the pretrained blocks first). Batch-norm statistics are kept. Each batch flips the
stride-8 maps with probability 1/2. Choices (the paper has no such step): docs/choices.md;
measured in docs/results.md, run 14.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .backbones import Backbone, efficientnet_lite0_top_s16, finetunable_blocks

SCALE = 10.0            # cosine classifier's softmax scale
BATCH = 32
HEAD_LR = 1e-3          # the linear map alone
LR = 1e-4               # the blocks and the linear map together


def finetune_attention_cnn(backbone: Backbone, images: Callable[[int], torch.Tensor], n_images: int,
                           labels: torch.Tensor, semantics: torch.Tensor, n_blocks: int, epochs: int,
                           seed: int = 0, pretrained: str = "imagenet") -> Iterator[tuple[str, int, int]]:
    """Fine-tune the last ``n_blocks`` blocks of ``backbone`` (an efficientnet_lite0_s16 cut) in
    place. ``images(k)`` gives image k (3, S, S) in [0, 1]; ``labels`` (N,) index the rows of
    ``semantics`` (training classes x attributes). A generator: yields (task, done, total) as it
    goes and returns the mean loss of each epoch (the linear map's epochs first)."""
    trunk = backbone.trunk
    cut = len(finetunable_blocks(backbone)) - n_blocks       # the first fine-tuned block
    blocks = list(trunk.blocks[cut:])
    top = efficientnet_lite0_top_s16(pretrained).to(semantics.device).eval().requires_grad_(False)
    was = backbone.training
    backbone.eval()
    gen = torch.Generator().manual_seed(seed)
    sem = F.normalize(semantics, dim=1)
    linear = torch.nn.Linear(1280, sem.shape[1], bias=False).to(semantics.device)
    with torch.no_grad():
        torch.nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=gen)   # nn.Linear's own init
        low = []
        for s in range(0, n_images, BATCH):
            x = torch.stack([images(k) for k in range(s, min(s + BATCH, n_images))]).to(semantics.device)
            low.append(trunk.run_blocks(trunk.stem(backbone.normalise(x)), 0, cut).half())
            yield "features below the fine-tuned blocks", min(s + BATCH, n_images), n_images
        low = torch.cat(low)

    def batches():
        perm = torch.randperm(n_images, generator=gen)
        for s in range(0, n_images, BATCH):
            b = perm[s:s + BATCH]
            x = low[b].float()
            yield (x.flip(3) if torch.rand((), generator=gen) < 0.5 else x), labels[b]

    def loss_of(pooled, y):
        return F.cross_entropy(SCALE * F.normalize(linear(pooled), dim=1) @ sem.t(), y)

    losses = []
    opt = torch.optim.Adam(linear.parameters(), lr=HEAD_LR)
    for ep in range(epochs):           # the linear map alone, on the blocks' ImageNet outputs
        total = 0.0
        for x, y in batches():
            with torch.no_grad():
                pooled = top(trunk.run_blocks(x, cut)).mean(dim=(2, 3))
            loss = loss_of(pooled, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
        losses.append(total / n_images)
        yield "classifier on the fixed network", ep + 1, 2 * epochs
    params = [p for b in blocks for p in b.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params + list(linear.parameters()), lr=LR)
    try:
        for ep in range(epochs):
            total = 0.0
            for x, y in batches():
                loss = loss_of(top(trunk.run_blocks(x, cut)).mean(dim=(2, 3)), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(y)
            losses.append(total / n_images)
            yield "fine-tuning the attention CNN", epochs + ep + 1, 2 * epochs
    finally:
        for p in params:
            p.requires_grad_(False)
        backbone.train(was)
    return losses
