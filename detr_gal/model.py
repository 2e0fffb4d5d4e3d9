"""DETR for Table IV (Sec. V-B) from transformers' maintained implementation, never re-typed.

:func:`build_detr` makes a ``transformers.DetrForObjectDetection`` with a timm backbone and no
pretrained weights (offline; a user with weights brings them through ``backbone_kwargs``);
:func:`build_loss` its set loss (``HungarianMatcher`` + ``ImageLoss``) split for GAL
(:class:`detr_gal.engine.DetrLoss`); :func:`param_groups` DETR's two learning rates (backbone
1e-5, the rest 1e-4 in the paper profile) with h, when given, in the transformer's group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from detr_gal.engine import DetrLoss

__all__ = ["build_detr", "build_loss", "param_groups", "count_parameters"]


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
    (``frozen``: DETR's frozen batch norms; ``batchnorm``: trainable ones), matcher costs
    ``class_cost``/``bbox_cost``/``giou_cost``, ``eos_coef``, optional ``backbone_kwargs`` merged
    into the timm backbone's config); ``loss_weights`` ``{"bbox", "giou"}`` (DETR: 5, 2; the
    class term's weight is 1)."""
    from transformers import DetrConfig, DetrForObjectDetection

    c = dict(model_cfg)
    backbone = {"model_type": "timm_backbone", "backbone": str(c["backbone"]), "num_channels": 3,
                "features_only": True, "use_pretrained_backbone": False, "out_indices": [1, 2, 3, 4],
                **dict(c.get("backbone_kwargs") or {})}
    w = dict(loss_weights or {})
    config = DetrConfig(
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
        eos_coefficient=float(c["eos_coef"]),
        bbox_loss_coefficient=_whole(w.get("bbox", 5)),
        giou_loss_coefficient=_whole(w.get("giou", 2)),
        num_labels=int(num_labels),
    )
    model = DetrForObjectDetection(config)
    norm = str(c.get("backbone_norm", "frozen"))
    if norm == "batchnorm":
        _thaw_batch_norm(model)
    elif norm != "frozen":
        raise ValueError(f"model.backbone_norm must be 'frozen' (DETR, for pretrained backbones) or "
                         f"'batchnorm' (trainable, for backbones trained from scratch), got {norm!r}")
    return model


def _thaw_batch_norm(model: nn.Module) -> None:
    """Replace transformers' frozen batch norms in the backbone by trainable ``BatchNorm2d``.

    DETR freezes the backbone's batch norms because its backbone is ImageNet-pretrained; a frozen
    batch norm of a backbone trained from scratch is the identity (mean 0, variance 1), i.e. no
    normalisation at all, which a from-scratch backbone (the cpu and smoke profiles) trains
    poorly with."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__ == "DetrFrozenBatchNorm2d":
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
