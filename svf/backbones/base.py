"""What every backbone shares: five stages ``layer0..layer4`` run in order, and the usual initialisation."""
from __future__ import annotations

import torch
from torch import nn

STAGES = tuple(f"layer{k}" for k in range(5))


class StagedBackbone(nn.Module):
    """A backbone whose subclasses define ``layer0..layer4`` (and ``channels``); ``forward`` returns every stage's
    output, which the few-shot heads need (mid-level layer2/3 features, layer4 for the prior)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for name in STAGES:
            x = getattr(self, name)(x)
            feats.append(x)
        return feats

    def init_weights(self) -> None:
        """Kaiming-normal (fan out) convs with zero bias, unit BatchNorm: torchvision's random initialisation."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
