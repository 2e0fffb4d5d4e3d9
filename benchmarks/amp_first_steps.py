"""Usage: PYTHONPATH=src:. python benchmarks/amp_first_steps.py bf16|fp16|fp32 STEPS SEEDS(0,1)

GAL vs baseline vs the noise control under CPU autocast (fp16 + GradScaler, or bf16), a small
timm EfficientNet from scratch, the paper's SGD (lr 0.05, momentum 0.9, wd 1e-5), alpha 1e-3."""
import json
import sys
import time

import timm
import torch
import torch.nn.functional as F

from experiments.engine import optimizer_step
from gal import GradientAdjuster


def run(arm, seed, dtype, steps, size=32, batch=32):
    torch.manual_seed(seed)
    model = timm.create_model("efficientnet_b0", num_classes=10, pretrained=False).to(memory_format=torch.channels_last)
    adj = None
    if arm != "baseline":
        adj = GradientAdjuster(10, arch=(100, 32, 16), alpha=0.0 if arm == "alpha0" else 1e-3, beta=1.0,
                               adjuster="normal" if arm == "noise" else "mlp", seed=seed)
    params = list(model.parameters()) + (list(adj.parameters()) if adj is not None else [])
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    g = torch.Generator().manual_seed(1000 + seed)
    # a learnable task: class-dependent mean colour + noise
    means = torch.randn(10, 3, 1, 1, generator=torch.Generator().manual_seed(7))
    def batch_xy(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = means[y] + torch.randn(n, 3, size, size, generator=g)
        return x.contiguous(memory_format=torch.channels_last), y
    xv, yv = batch_xy(256)
    losses, skipped = [], 0
    for _ in range(steps):
        x, y = batch_xy(batch)
        with torch.autocast("cpu", dtype=dtype):
            z = model(x)
        if adj is None:
            loss = F.cross_entropy(z.float(), y)
            (scaler.scale(loss) if scaler else loss).backward()
        else:
            loss = adj.backward(z, y, F.cross_entropy, lr=opt.param_groups[0]["lr"], scaler=scaler).loss
        before = scaler.get_scale() if scaler else None
        optimizer_step(model, opt, scaler=scaler)
        if scaler and scaler.get_scale() < before:
            skipped += 1
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        zv = model(xv).float()
    return {"arm": arm, "seed": seed, "dtype": str(dtype), "train_loss_last5": sum(losses[-5:]) / 5,
            "eval_loss": float(F.cross_entropy(zv, yv)), "eval_err": float((zv.argmax(1) != yv).float().mean()) * 100,
            "skipped_steps": skipped, "scale": scaler.get_scale() if scaler else None}

if __name__ == "__main__":
    torch.set_num_threads(1)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[sys.argv[1]]
    steps, seeds = int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
    for seed in seeds:
        for arm in ("baseline", "alpha0", "gal", "noise"):
            t0 = time.time()
            r = run(arm, seed, dtype, steps)
            r["s"] = round(time.time() - t0, 1)
            print(json.dumps(r), flush=True)
