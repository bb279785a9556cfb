"""VGG16-BN split into ``layer0..layer4`` by ``features`` index, as PFENet, BAM and the authors' SVF code do.

| stage  | features | content                 | stride |
| layer0 | 0-6      | conv1_1, conv1_2, pool  | /2     |
| layer1 | 7-13     | conv2_1, conv2_2, pool  | /4     |
| layer2 | 14-23    | conv3_1..3, pool        | /8     |
| layer3 | 24-33    | conv4_1..3, pool        | /16    |
| layer4 | 34-42    | conv5_1..3 (no pool)    | /16    |

Max-pools use ``ceil_mode=True`` (as in those repositories). ``output_stride=8`` (the CPU demo only) leaves out
layer3's max-pool, so that layer3/4 features are 8x8 at a 64 px input like the dilated ResNet's instead of 4x4; the
module names and parameters stay the same (the pool has none). Each stage is an ``nn.Sequential`` holding the original
``features`` modules, so ``layerK.<i>`` names follow the index inside the stage. ``width`` scales channels (demo).
"""
from __future__ import annotations

from torch import nn

from .base import STAGES, StagedBackbone

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
STAGE_BOUNDS = ((0, 7), (7, 14), (14, 24), (24, 34), (34, 43))


def vgg16_bn_features(width: float = 1.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
        else:
            cout = max(1, int(round(v * width)))
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


LAYER3_POOL = 33  # index in ``features`` of layer3's closing max-pool


class VGGBackbone(StagedBackbone):
    def __init__(self, width: float = 1.0, output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"VGG16 output_stride must be 16 (the papers) or 8 (demo), got {output_stride!r}")
        self.width = width
        features = vgg16_bn_features(width)
        if output_stride == 8:
            features[LAYER3_POOL] = nn.Identity()
        for k, (lo, hi) in enumerate(STAGE_BOUNDS):
            setattr(self, STAGES[k], nn.Sequential(*[features[i] for i in range(lo, hi)]))
        self.init_weights()  # same module order as `features`, so the same random draws
        c = lambda v: max(1, int(round(v * width)))  # noqa: E731
        self.channels = dict(zip(STAGES, (c(64), c(128), c(256), c(512), c(512))))


def vgg16_bn(width: float = 1.0, output_stride: int = 16) -> VGGBackbone:
    return VGGBackbone(width, output_stride)
