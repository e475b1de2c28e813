"""Stage 1 channel grouping by co-location (engine/colocation.py): hand-computed small cases and a
planted head/tail structure that plain k-means over peak coordinates does not recover."""
import numpy as np
import pytest
import torch

from sgma.engine import colocation as co
from sgma.engine.config import ConfigError, RunConfig
from sgma.engine.stages import kmeans_channel_groups


def test_channel_peaks_by_hand():
    f = torch.zeros(2, 2, 3, 5)
    f[0, 0, 2, 4] = 3.0          # (2/2, 4/4)
    f[0, 1, 0, 1] = 1.0          # (0, 1/4)
    f[1, 0, 1, 1] = 2.0          # (1/2, 1/4)
    f[1, 1, 2, 0] = 5.0          # (1, 0)
    pos, val = co.channel_peaks(f)
    assert pos.shape == (2, 2, 2) and val.shape == (2, 2)
    assert pos[0, 0].tolist() == pytest.approx([1.0, 1.0])
    assert pos[0, 1].tolist() == pytest.approx([0.0, 0.25])
    assert pos[1, 0].tolist() == pytest.approx([0.5, 0.25])
    assert pos[1, 1].tolist() == pytest.approx([1.0, 0.0])
    assert val.tolist() == [[3.0, 1.0], [2.0, 5.0]]


def test_strong_peaks_are_at_least_the_channel_median_and_positive():
    values = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 4.0]])
    # channel 0: median 2 -> images 1, 2; channel 1: median 0, but 0 is not positive -> image 2 only
    assert co.strong_peaks(values).tolist() == [[False, False], [True, False], [True, True]]


def test_colocation_affinity_by_hand():
    # 3 images, 3 channels; positions (row, col)
    pos = np.array([
        [[0.0, 0.0], [0.0, 0.1], [1.0, 1.0]],
        [[0.5, 0.5], [0.9, 0.9], [0.5, 0.55]],
        [[0.2, 0.2], [0.2, 0.2], [0.2, 0.25]],
    ])
    strong = np.array([[True, True, True], [True, True, False], [True, True, True]])
    a = co.colocation_affinity(pos, strong, radius=0.15)
    # channels 0,1: both strong on 3 images, near on images 0 and 2 -> 2/3
    assert a[0, 1] == pytest.approx(2 / 3) and a[1, 0] == pytest.approx(2 / 3)
    # channels 0,2: both strong on images 0 and 2, near on image 2 only -> 1/2
    assert a[0, 2] == pytest.approx(1 / 2)
    # channels 1,2: both strong on images 0 and 2, near on image 2 -> 1/2
    assert a[1, 2] == pytest.approx(1 / 2)
    assert np.diag(a).tolist() == [1.0, 1.0, 1.0]


def _group(positions, saliency, consistency=0.9, channels=(0,)):
    mask = np.zeros(8, dtype=bool)
    mask[list(channels)] = True
    return co.ChannelGroup(mask, np.asarray(positions, float), consistency, saliency)


def test_choose_parts_takes_the_most_salient_then_the_farthest():
    n = 4
    head = _group([[0.2, 0.8]] * n, saliency=0.95, channels=(0, 1, 2))
    body = _group([[0.5, 0.5]] * n, saliency=0.85, channels=(3, 4, 5))
    tail = _group([[0.7, 0.1]] * n, saliency=0.6, channels=(6, 7, 0))
    clutter = _group([[1.0, 0.0]] * n, saliency=0.3)                  # farthest, but not salient
    wobbly = _group([[0.0, 0.0]] * n, saliency=0.9, consistency=0.2)  # far and salient, inconsistent
    chosen = co.choose_parts([body, clutter, tail, wobbly, head], n_parts=2)
    assert chosen[0] is head and chosen[1] is tail
    three = co.choose_parts([body, clutter, tail, wobbly, head], n_parts=3)
    assert three[2] is body
    assert co.choose_parts([clutter, wobbly], n_parts=2) == []


def _planted(n_img=160, seed=0):
    """Objects at random places, facing left or right, with one of 4 tail kinds. 6 "head" channels
    peak strongly on the head; 4 "tail" channels each peak on two tail kinds (channel 6 on kinds 0
    and 1, channel 7 on 1 and 2, ...) and elsewhere fire weakly somewhere random; 10 clutter
    channels fire at random spots.
    A faint object-wide response makes the object the salient region."""
    g = np.random.default_rng(seed)
    h = w = 16
    f = np.zeros((n_img, 20, h, w), np.float32)
    heads, tails = [], []
    for k in range(n_img):
        cy, cx = g.integers(5, 11), g.integers(5, 11)
        d = 4 if g.random() < 0.5 else -4
        head, tail = (cy, cx + d), (cy, cx - d)
        heads.append(head)
        tails.append(tail)
        f[k, :, cy - 1:cy + 2, min(head[1], tail[1]):max(head[1], tail[1]) + 1] += 0.3   # the object
        for c in range(6):
            f[k, c, head[0], head[1]] += 2.0 + 0.1 * c
        kind = k % 4
        for c in range(6, 10):
            if kind in (c - 6, (c - 5) % 4):
                f[k, c, tail[0], tail[1]] += 3.0
            else:
                f[k, c, g.integers(0, h), g.integers(0, w)] += 0.2
        for c in range(10, 20):
            f[k, c, g.integers(0, h), g.integers(0, w)] += 1.0 + g.random()
    return torch.from_numpy(f), heads, tails


def test_colocation_finds_the_planted_head_and_tail_groups():
    f, _, _ = _planted()
    labels = co.colocation_channel_groups(f, n_parts=2, seed=0, ks=(3, 4, 5))
    assert labels.shape == (20,)
    assert set(labels[:6]) == {0}                   # the most salient group: the head
    assert set(labels[6:10]) == {1}                 # the farthest consistent group: the tail
    assert (labels[10:] == -1).sum() >= 9           # clutter is no part


def test_plain_kmeans_mixes_the_planted_tail_with_clutter():
    """Why the co-location grouping exists: k-means over all peak coordinates puts the half-time
    tail channels with the clutter, not in a group of their own."""
    f, _, _ = _planted()
    labels = kmeans_channel_groups(f, n_parts=2, seed=0)
    tail_groups = set(labels[6:10])
    clutter_groups = set(labels[10:])
    assert tail_groups & clutter_groups


def test_no_structure_gives_an_empty_result_for_the_fallback():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(40, 12, 8, 8, generator=g)
    assert co.colocation_channel_groups(f, n_parts=2, seed=0, ks=(3, 4)).size == 0


def test_channel_grouping_is_validated_by_name():
    cfg = RunConfig()
    cfg.train.channel_grouping = "spectral"
    with pytest.raises(ConfigError, match="channel_grouping"):
        cfg.validate()
