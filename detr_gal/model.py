"""DETR for Table IV (Sec. V-B) from transformers' maintained implementation, never re-typed.

:func:`build_detr` makes a ``transformers.DetrForObjectDetection`` (or, with ``variant:
conditional_detr``, transformers' ``ConditionalDetrForObjectDetection``: DETR with conditional
spatial queries and a sigmoid focal class loss, which converges several times faster; a stand-in
option, never the paper profile) with a timm backbone and no pretrained weights (offline; a user with weights brings them through ``backbone_kwargs``);
:func:`build_loss` its set loss (``HungarianMatcher`` + ``ImageLoss``) split for GAL
(:class:`detr_gal.engine.DetrLoss`); :func:`param_groups` DETR's two learning rates (backbone
1e-5, the rest 1e-4 in the paper profile) with h, when given, in the transformer's group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from detr_gal.engine import DetrLoss

__all__ = ["VARIANTS", "build_detr", "build_loss", "backbone_of", "param_groups", "count_parameters"]

#: ``model.variant`` -> transformers' (config, model) class names
VARIANTS = {"detr": ("DetrConfig", "DetrForObjectDetection"),
            "conditional_detr": ("ConditionalDetrConfig", "ConditionalDetrForObjectDetection")}


def _whole(v: Any) -> int:
    """transformers' DetrConfig types the matcher costs and box coefficients as int."""
    if float(v) != int(float(v)):
        raise ValueError(f"DETR's matcher costs and box loss coefficients must be whole numbers "
                         f"(transformers' DetrConfig types them as int), got {v}")
    return int(float(v))


def build_detr(model_cfg: Mapping[str, Any], num_labels: int,
               loss_weights: Mapping[str, float] | None = None) -> nn.Module:
    """``DetrForObjectDetection`` from a config section (keys of ``experiments/configs/detr.yaml``:
    ``backbone`` (a timm name), ``num_queries``, ``d_model``, ``encoder_layers``,
    ``decoder_layers``, ``heads``, ``ffn_dim``, ``dropout``, ``aux_loss``, ``backbone_norm``
    (``frozen``: DETR's frozen batch norms and frozen ResNet stem + layer1, which need
    ``backbone_weights``, a timm state dict; ``batchnorm``: trainable ones), matcher costs
    ``class_cost``/``bbox_cost``/``giou_cost``, ``eos_coef``, optional ``backbone_kwargs`` merged
    into the timm backbone's config), optional ``variant`` (:data:`VARIANTS`, default ``detr``;
    ``conditional_detr`` has no no-object weight ``eos_coef``: its focal loss has none);
    ``loss_weights`` ``{"bbox", "giou"}`` (DETR: 5, 2; the class term's weight is 1)."""
    import transformers

    c = dict(model_cfg)
    variant = str(c.get("variant") or "detr")
    if variant not in VARIANTS:
        raise ValueError(f"model.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    config_cls, model_cls = (getattr(transformers, n) for n in VARIANTS[variant])
    backbone = {"model_type": "timm_backbone", "backbone": str(c["backbone"]), "num_channels": 3,
                "features_only": True, "use_pretrained_backbone": False, "out_indices": [1, 2, 3, 4],
                **dict(c.get("backbone_kwargs") or {})}
    w = dict(loss_weights or {})
    extra = {"eos_coefficient": float(c["eos_coef"])} if variant == "detr" else {}
    config = config_cls(
        backbone_config=backbone,
        num_queries=int(c["num_queries"]),
        d_model=int(c["d_model"]),
        encoder_layers=int(c["encoder_layers"]),
        decoder_layers=int(c["decoder_layers"]),
        encoder_attention_heads=int(c["heads"]),
        decoder_attention_heads=int(c["heads"]),
        encoder_ffn_dim=int(c["ffn_dim"]),
        decoder_ffn_dim=int(c["ffn_dim"]),
        dropout=float(c["dropout"]),
        auxiliary_loss=bool(c["aux_loss"]),
        class_cost=_whole(c["class_cost"]),
        bbox_cost=_whole(c["bbox_cost"]),
        giou_cost=_whole(c["giou_cost"]),
        **extra,
        bbox_loss_coefficient=_whole(w.get("bbox", 5)),
        giou_loss_coefficient=_whole(w.get("giou", 2)),
        num_labels=int(num_labels),
    )
    model = model_cls(config)
    norm = str(c.get("backbone_norm", "frozen"))
    weights = c.get("backbone_weights")
    if norm not in ("frozen", "batchnorm"):
        raise ValueError(f"model.backbone_norm must be 'frozen' (DETR, for pretrained backbones) or "
                         f"'batchnorm' (trainable, for backbones trained from scratch), got {norm!r}")
    if norm == "frozen" and not weights:
        raise ValueError(
            f"backbone_norm 'frozen' (DETR's frozen batch norms) needs ImageNet-pretrained backbone "
            f"weights: a frozen batch norm of an untrained backbone is the identity. Set "
            f"model.backbone_weights=/path/to/{c['backbone']}.pth (a timm state dict), or "
            f"backbone_norm: batchnorm to train the backbone from scratch.")
    if norm == "batchnorm":
        _thaw_batch_norm(model)  # before loading, so that the weights' batch norms are kept
    if weights:
        load_backbone_weights(model, weights)
    if norm == "frozen":
        _freeze_like_detr(model, str(c["backbone"]))
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    """The timm ``features_only`` backbone inside a ``DetrForObjectDetection``."""
    return model.model.backbone.model  # DetrModel -> DetrConvEncoder -> the timm features model


def load_backbone_weights(model: nn.Module, path: str) -> None:
    """Load a timm classification checkpoint (a state dict, e.g. ``resnet50.pth``) into the
    backbone; the classifier's keys are ignored, any other missing or unknown key is an error."""
    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights {path} not found; set model.backbone_weights "
                                f"to a timm state dict file")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    backbone = backbone_of(model)
    own = backbone.state_dict()
    sd = {k: v for k, v in sd.items() if k in own or not k.startswith(("fc.", "classifier.", "head."))}
    unknown = [k for k in sd if k not in own and not k.endswith("num_batches_tracked")]
    missing = [k for k in own if k not in sd]
    if unknown or missing:
        raise ValueError(f"{path} does not fit backbone {type(backbone).__name__}: missing "
                         f"{missing[:5]}, unknown {unknown[:5]} (is it a timm state dict of this backbone?)")
    backbone.load_state_dict({k: v for k, v in sd.items() if k in own})


def _freeze_like_detr(model: nn.Module, backbone: str) -> None:
    """DETR trains only layer2-4 of a pretrained ResNet backbone (stem and layer1 frozen);
    transformers does this for its own ResNets but not for a timm backbone, so it is done here."""
    if not backbone.startswith("resnet"):
        return
    for name, p in backbone_of(model).named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            p.requires_grad_(False)


def _thaw_batch_norm(model: nn.Module) -> None:
    """Replace transformers' frozen batch norms in the backbone by trainable ``BatchNorm2d``.

    DETR freezes the backbone's batch norms because its backbone is ImageNet-pretrained; a frozen
    batch norm of a backbone trained from scratch is the identity (mean 0, variance 1), i.e. no
    normalisation at all, which a from-scratch backbone (the cpu and smoke profiles) trains
    poorly with."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__.endswith("DetrFrozenBatchNorm2d"):
                setattr(module, child_name, nn.BatchNorm2d(child.weight.shape[0]))


def build_loss(model: nn.Module) -> DetrLoss:
    """DETR's set loss for ``model`` split for GAL (its config's matcher costs and coefficients)."""
    return DetrLoss(model.config)


def param_groups(model: nn.Module, lr: float, lr_backbone: float, weight_decay: float,
                 h: nn.Module | None = None) -> list[dict[str, Any]]:
    """DETR's AdamW groups: group 0 the transformer, heads (and h) at ``lr``, group 1 the backbone
    at ``lr_backbone`` (DETR: 1e-4 and 1e-5, weight decay 1e-4)."""
    main = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
    backbone = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
    if h is not None:
        main += [p for p in h.parameters() if p.requires_grad]
    groups = [{"params": main, "lr": lr, "weight_decay": weight_decay}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone, "weight_decay": weight_decay})
    return groups


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())
