"""Model factories for the classification tasks (Sec. V-B).

* Any timm model by name (``efficientnet_b1`` for Tables I-II under the ``paper`` profile,
  ``resnet50`` / ``efficientnet_b2`` for Table III), with ImageNet weights read from a local file
  (``model.pretrained_file``) when the user has them.
* ``convnet_<w0>_<w1>_<w2>[_s2]``: a small conv-BatchNorm-GELU network in the style of the fast CIFAR
  baselines (airbench), for the ``cpu`` profile where EfficientNet-B1 at 224 px would take days.
  It is not a ResNet or EfficientNet, only three conv groups with max-pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ConvNet", "build_model", "count_parameters"]


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


class ConvNet(nn.Module):
    """Conv(3->w0), then three groups [conv, max-pool 2, BN, GELU, conv, BN, GELU] of widths
    (w1, w2, w2)... as listed in ``widths`` = (w0, w1, w2), a global max-pool and a linear
    head whose logits are scaled by ``logit_scale`` (a fixed temperature). ``stem_stride`` 2
    replaces the first conv by a 2x2 stride-2 patchify conv (4x fewer FLOPs after it)."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), num_classes: int = 10,
                 logit_scale: float = 1 / 9, stem_stride: int = 1) -> None:
        super().__init__()
        w0, w1, w2 = widths
        if stem_stride == 1:
            layers: list[nn.Module] = _conv_bn(3, w0)
        else:  # patchify stem: a stride-s conv with an s x s kernel (s times less resolution)
            layers = [nn.Conv2d(3, w0, stem_stride, stride=stem_stride, bias=False),
                      nn.BatchNorm2d(w0), nn.GELU()]
        for cin, cout in ((w0, w1), (w1, w2), (w2, w2)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(cout), nn.GELU(), *_conv_bn(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(w2, num_classes, bias=False)
        self.logit_scale = float(logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale


def build_model(name: str, num_classes: int, *, pretrained: bool = False,
                pretrained_file: str | None = None, **kwargs: Any) -> nn.Module:
    """``convnet_<w0>_<w1>_<w2>`` or a timm model name (``timm.create_model``).

    With ``pretrained_file`` the ImageNet weights are read from that local file
    (``pretrained_cfg_overlay=dict(file=...)``) and the classifier is re-initialised for
    ``num_classes``; ``pretrained=True`` without a file lets timm download them.
    """
    if name.startswith("convnet_"):
        parts = name.split("_")[1:]
        stride = 1
        if parts and parts[-1].startswith("s") and parts[-1][1:].isdigit():
            stride = int(parts.pop()[1:])
        try:
            widths = tuple(int(w) for w in parts)
            assert len(widths) == 3
        except (ValueError, AssertionError):
            raise ValueError(f"model {name!r}: use convnet_<w0>_<w1>_<w2>[_s<stride>], e.g. "
                             f"convnet_32_64_128 or convnet_32_64_128_s2") from None
        if pretrained or pretrained_file:
            raise ValueError(f"{name} has no pretrained weights; set model.pretrained: false")
        return ConvNet(widths, num_classes, stem_stride=stride, **kwargs)  # type: ignore[arg-type]
    import timm

    if pretrained_file:
        from pathlib import Path

        if not Path(pretrained_file).is_file():
            raise FileNotFoundError(
                f"model.pretrained_file {pretrained_file} does not exist; give the path of the "
                f"timm/PyTorch weights of {name}, or set model.pretrained_file: null and "
                f"model.pretrained: false to train from scratch")
        return timm.create_model(name, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay={"file": str(pretrained_file)}, **kwargs)
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
