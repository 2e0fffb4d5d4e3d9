"""GAL on DETR's predicted boxes (Sec. V-B, Table IV: "we minimize the remainder w.r.t. predicted
bounding box features, i.e. four floats indicating a box").

The feature z of Algorithm 1 is ``pred_boxes`` ``[batch, queries, 4]`` (normalised cx, cy, w, h);
h acts on each query's 4 numbers (d = 4). The loss l that GAL differentiates and evaluates
tentatively (Eq. 7, line 7) is DETR's box loss of the *last* decoder layer on the matched
queries, ``(w_L1 * sum |b - b*| + w_GIoU * sum (1 - GIoU(b, b*))) / num_boxes``, with the
Hungarian matching of the current step held fixed: the matching is a discrete choice made on the
current prediction, and the tentative step ``z - eta~ g`` asks how much *this* loss would fall,
not whether another assignment would be cheaper. Unmatched queries have ``dl/dz = 0``, so Eq. 4
gives them ``v~ = 0`` too. The classification term and the auxiliary decoder layers' losses train
as usual; :func:`detr_gal.engine.train_one_epoch` adds them in the same backward pass.

The matched loss here uses :func:`torchvision.ops.generalized_box_iou_loss` on the matched pairs
(no ``N x M`` matrix and no host-side validity check, so the tentative boxes, which may have
negative width, never stop the step); it equals transformers' ``ImageLoss.loss_boxes`` weighted
sum for valid boxes (tested).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torchvision.ops import box_convert, generalized_box_iou_loss

__all__ = ["MatchedBoxes", "matched_box_loss"]


@dataclasses.dataclass(frozen=True)
class MatchedBoxes:
    """The ``y`` that GAL passes to :func:`matched_box_loss`: one step's fixed Hungarian matching.

    Attributes:
        batch_idx, query_idx: int64 ``[M]``, the matched predictions ``z[batch_idx, query_idx]``.
        boxes: float ``[M, 4]``, their target boxes (normalised cx, cy, w, h).
        num_boxes: the loss's normaliser, as transformers' DETR loss computes it: the target
            boxes of this process's batch, at least 1.
        bbox_weight, giou_weight: DETR's loss coefficients (5 and 2).
    """

    batch_idx: torch.Tensor
    query_idx: torch.Tensor
    boxes: torch.Tensor
    num_boxes: float
    bbox_weight: float = 5.0
    giou_weight: float = 2.0

    @classmethod
    def from_indices(cls, indices: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     targets: Sequence[dict[str, torch.Tensor]], num_boxes: float,
                     bbox_weight: float = 5.0, giou_weight: float = 2.0) -> MatchedBoxes:
        """From a matcher's ``[(query_idx_i, target_idx_i)]`` per image and DETR's targets."""
        dev = targets[0]["boxes"].device if targets else torch.device("cpu")
        batch = [torch.full_like(torch.as_tensor(q, device=dev), i) for i, (q, _) in enumerate(indices)]
        query = [torch.as_tensor(q, device=dev) for q, _ in indices]
        boxes = [t["boxes"][torch.as_tensor(j, device=dev)] for t, (_, j) in zip(targets, indices, strict=True)]
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return cls(
            batch_idx=torch.cat(batch).long() if batch else empty,
            query_idx=torch.cat(query).long() if query else empty,
            boxes=torch.cat(boxes) if boxes else torch.zeros(0, 4, device=dev),
            num_boxes=float(num_boxes), bbox_weight=float(bbox_weight), giou_weight=float(giou_weight),
        )


def matched_box_loss(z: torch.Tensor, y: MatchedBoxes) -> torch.Tensor:
    """DETR's weighted box loss (L1 + GIoU) of the matched queries of ``z`` ``[B, Q, 4]``, a
    scalar: the loss l of Eq. 7 for GAL on boxes (the matching ``y`` held fixed)."""
    src = z[y.batch_idx, y.query_idx]
    tgt = y.boxes.to(src.dtype)
    l1 = (src - tgt).abs().sum()
    giou = generalized_box_iou_loss(box_convert(src, "cxcywh", "xyxy"),
                                    box_convert(tgt, "cxcywh", "xyxy"), reduction="sum")
    return (y.bbox_weight * l1 + y.giou_weight * giou) / y.num_boxes
