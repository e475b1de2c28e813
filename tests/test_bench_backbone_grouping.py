"""bench/backbone_grouping.py (run 25): the stride-16 cut of each EfficientNet-Lite is found from its
blocks' strides, and for lite0 it is the cut the engine's backbone uses."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from backbone_grouping import stride16_cut  # noqa: E402


def test_the_stride16_cut_of_each_lite_network():
    from efficientnet_lite_pytorch import EfficientNet
    from sgma.engine.backbones import _EfficientTrunkS16
    cuts = {v: stride16_cut(EfficientNet.from_name(f"efficientnet-lite{v}")._blocks) for v in (0, 2)}
    assert cuts == {0: 11, 2: 15}
    net = EfficientNet.from_name("efficientnet-lite0").eval()
    trunk = _EfficientTrunkS16(net, cuts[0]).eval()
    with torch.no_grad():
        out = trunk(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 112, 4, 4)                 # stride 16, the 112 channels of the cpu preset
    lite2 = _EfficientTrunkS16(EfficientNet.from_name("efficientnet-lite2").eval(), cuts[2]).eval()
    with torch.no_grad():
        assert lite2(torch.zeros(1, 3, 64, 64)).shape == (1, 120, 4, 4)
