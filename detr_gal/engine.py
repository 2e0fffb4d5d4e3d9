"""DETR's engine for Table IV, in the shape of DETR's own ``engine.py``: two plain functions.

* :func:`train_one_epoch` - DETR's set loss (Hungarian matching, class cross-entropy with the
  no-object weight, L1 + GIoU box loss, the same on every auxiliary decoder layer) from
  transformers' maintained DETR loss; with an adjuster, the last layer's
  box term goes through GAL (:mod:`detr_gal.box_gal`, Algorithm 1 on ``pred_boxes``) and the other
  terms through their usual gradient, all in one backward pass. The optimizer tail (clipping at
  0.1, step, per-step schedule) is the classification engine's :func:`experiments.engine.optimizer_step`.
* :func:`evaluate` - the loss on held-out images and COCO's six APs from ``pycocotools``'
  ``COCOeval`` (AP, AP50, AP75, AP_S, AP_M, AP_L in %, Table IV's columns).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from detr_gal.box_gal import MatchedBoxes, matched_box_loss
from experiments.common import DIAGNOSTICS, EpochAverager
from experiments.engine import optimizer_step, unwrap
from gal import GradientAdjuster

__all__ = ["AP_KEYS", "DetrLoss", "train_one_epoch", "evaluate", "coco_detections", "uses_softmax"]

#: COCOeval's first six stats, in order, as Table IV's columns
AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")

Batch = tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def uses_softmax(config: Any) -> bool:
    """True for DETR (softmax over classes + "no object"), False for Conditional DETR (a sigmoid
    per class, no "no object" logit)."""
    return getattr(config, "model_type", "detr") == "detr"


class DetrLoss:
    """DETR's set loss split into GAL's box term and the rest (Sec. V-B).

    The model is called with ``labels``, so transformers' own DETR loss (``ForObjectDetectionLoss``:
    Hungarian matching, class cross-entropy with the no-object weight, L1 + GIoU, the same on
    every auxiliary decoder layer) gives the total, exactly as a plain DETR trains. For GAL the
    last layer's box term is taken out of that total and recomputed as
    :func:`detr_gal.box_gal.matched_box_loss` on the same matching (the matcher is deterministic;
    both are equal, tested), whose gradient w.r.t. ``pred_boxes`` GAL adjusts.

    Args:
        config: the model's ``DetrConfig`` (matcher costs, ``bbox_loss_coefficient``,
            ``giou_loss_coefficient``).
    """

    def __init__(self, config: Any) -> None:
        from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher
        from transformers.loss.loss_for_object_detection import HungarianMatcher

        # the matcher transformers' own loss uses for this model (Conditional DETR: focal costs)
        cls = HungarianMatcher if uses_softmax(config) else DeformableDetrHungarianMatcher
        self.matcher = cls(class_cost=config.class_cost, bbox_cost=config.bbox_cost, giou_cost=config.giou_cost)
        self.w_bbox = float(config.bbox_loss_coefficient)
        self.w_giou = float(config.giou_loss_coefficient)

    def __call__(self, outputs: Any, targets: list[dict[str, torch.Tensor]], split: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, MatchedBoxes | None, dict[str, torch.Tensor]]:
        """``(rest, box, matched, parts)`` from the outputs of ``model(..., labels=targets)``:
        the loss without the last layer's box term, that box term
        (``matched_box_loss(pred_boxes, matched)``), the last layer's matching, and detached
        parts for logging. ``rest + box`` equals DETR's total loss. With ``split=False`` (the
        baseline, evaluation) nothing is recomputed: ``box`` is transformers' own box term,
        ``rest = outputs.loss - box`` and ``matched`` is None."""
        ld = outputs.loss_dict
        box_hf = self.w_bbox * ld["loss_bbox"] + self.w_giou * ld["loss_giou"]
        if not split:
            rest = outputs.loss - box_hf
            return rest, box_hf, None, {"loss_ce": ld["loss_ce"].detach(), "loss_box": box_hf.detach(),
                                        "loss_aux": (rest - ld["loss_ce"]).detach()}
        indices = self.matcher({"logits": outputs.logits, "pred_boxes": outputs.pred_boxes}, targets)
        # transformers' normaliser: target boxes of this process, at least 1
        num_boxes = max(float(sum(len(t["class_labels"]) for t in targets)), 1.0)
        matched = MatchedBoxes.from_indices(indices, targets, num_boxes, self.w_bbox, self.w_giou)
        box = matched_box_loss(outputs.pred_boxes, matched)
        rest = outputs.loss - box_hf
        parts = {"loss_ce": ld["loss_ce"].detach(), "loss_box": box.detach(),
                 "loss_aux": (rest - ld["loss_ce"]).detach()}
        return rest, box, matched, parts


def train_one_epoch(
    model: nn.Module,
    loss: DetrLoss,
    data_loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    adjuster: GradientAdjuster | None = None,
    scheduler: Any = None,
    max_norm: float = 0.1,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Train one epoch; returns the means of ``train_loss`` (DETR's total), its parts, GAL's
    diagnostics on the box term (with an adjuster), ``lr``, ``images_per_s``, ``s_per_image``.

    GAL's ``lr`` is the transformer group's current learning rate (param group 0).
    """
    model.train()
    names = ["train_loss", "loss_ce", "loss_box", "loss_aux"]
    if adjuster is not None:
        names += [k for k in DIAGNOSTICS if k not in names]
    avg = EpochAverager(names)
    lr0 = float(optimizer.param_groups[0]["lr"])
    n_images = 0
    t0 = time.perf_counter()
    for x, mask, targets, _ in data_loader:
        x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        outputs = model(pixel_values=x, pixel_mask=mask, labels=targets)
        rest, box, matched, parts = loss(outputs, targets, split=adjuster is not None)
        row = dict(parts)
        row["train_loss"] = outputs.loss.detach()
        if adjuster is None:  # plain DETR: transformers' total loss, untouched
            outputs.loss.backward()
        else:
            # Algorithm 1 on the box term; the class and auxiliary terms back-propagate as usual
            # in the same pass (under DDP the adjuster reduces h's gradient itself)
            stats = adjuster.backward(outputs.pred_boxes, matched, matched_box_loss,
                                      lr=optimizer.param_groups[0]["lr"], extra=rest)
            d = stats.as_dict()
            d.pop("loss")
            row.update(d)
        avg.add(row)
        optimizer_step(model, optimizer, max_norm=max_norm, scheduler=scheduler)
        n_images += int(x.shape[0])
        if progress is not None:
            progress(int(x.shape[0]))
    seconds = time.perf_counter() - t0
    out = avg.means()
    n_global = n_images * _world()
    out.update({"lr": lr0, "images_per_s": n_global / seconds if seconds > 0 else float("nan"),
                "s_per_image": seconds / n_global if n_global else float("nan")})
    return out


def coco_detections(logits: torch.Tensor, boxes: torch.Tensor, image_ids: Sequence[int],
                    orig_sizes: torch.Tensor, cat_ids: Sequence[int], softmax: bool = True,
                    top_k: int = 100) -> list[dict[str, Any]]:
    """COCO result dicts from DETR's outputs, the box scaled from normalised (cx, cy, w, h) to
    absolute (x, y, w, h) on the original image (``orig_sizes`` = (height, width)).

    ``softmax`` (DETR's ``PostProcess``): per query the best non-"no-object" class and its softmax
    probability as the score. Otherwise (Conditional DETR's post-processing, sigmoid classes): the
    ``top_k`` (query, class) pairs of an image by sigmoid probability, each a detection."""
    # on the host: the model's outputs may be on a GPU, the sizes and ids are host data
    logits = logits.detach().float().cpu()
    n, q, k = logits.shape[0], logits.shape[1], logits.shape[2] - int(softmax)
    if softmax:
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        queries = torch.arange(q).expand(n, q)
    else:
        scores, flat = logits.sigmoid().flatten(1).topk(min(top_k, q * k), dim=1)
        queries, labels = flat // k, flat % k
    h, w = orig_sizes[:, 0:1].float().cpu(), orig_sizes[:, 1:2].float().cpu()
    cx, cy, bw, bh = boxes.detach().float().cpu().unbind(-1)
    xywh = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], dim=-1)
    out = []
    for i, img in enumerate(image_ids):
        for j in range(scores.shape[1]):
            out.append({"image_id": int(img), "category_id": int(cat_ids[int(labels[i, j])]),
                        "bbox": [round(float(v), 3) for v in xywh[i, int(queries[i, j])]],
                        "score": float(scores[i, j])})
    return out


def coco_ap(coco_gt: Any, detections: list[dict[str, Any]], image_ids: Sequence[int]) -> dict[str, float]:
    """COCO's six APs (%) of ``detections`` on ``image_ids`` (``COCOeval``, bbox); all 0 when
    there are no detections."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return dict.fromkeys(AP_KEYS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval reports -1 where a size range has no ground truth; shown as NaN, not as 0
    return {k: (100.0 * float(v) if v >= 0 else float("nan")) for k, v in zip(AP_KEYS, ev.stats[:6], strict=True)}


@torch.no_grad()
def evaluate(model: nn.Module, data_loader: Iterable[Batch], coco_gt: Any,
             image_ids: Sequence[int], orig_sizes: torch.Tensor, cat_ids: Sequence[int],
             device: torch.device) -> dict[str, float]:
    """``{"val_loss", "ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l"}`` on the loader's images.

    ``image_ids``/``orig_sizes`` are indexed by the loader's ``index``; under DDP the detections
    are gathered on every rank before COCOeval (each rank returns the same numbers).
    """
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    dets: list[dict[str, Any]] = []
    seen: list[int] = []
    softmax = uses_softmax(unwrap(model).config)
    for x, mask, targets, index in data_loader:
        if x.shape[0] == 0:
            continue
        x, mask = x.to(device), mask.to(device)
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        outputs = unwrap(model)(pixel_values=x, pixel_mask=mask, labels=targets)
        sums[0] += float(outputs.loss) * x.shape[0]
        sums[1] += x.shape[0]
        ids = [image_ids[int(i)] for i in index]
        dets += coco_detections(outputs.logits, outputs.pred_boxes, ids, orig_sizes[index.cpu()], cat_ids,
                                softmax=softmax)
        seen += ids
    if _world() > 1:
        dist.all_reduce(sums)
        gathered: list[Any] = [None] * _world()
        dist.all_gather_object(gathered, (dets, seen))
        dets = [d for part in gathered for d in part[0]]
        seen = [i for part in gathered for i in part[1]]
    out = {"val_loss": float(sums[0] / sums[1].clamp(min=1))}
    out.update(coco_ap(coco_gt, dets, seen))
    return out
