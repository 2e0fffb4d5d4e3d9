"""Gradient adjustment modules h(z; theta) (paper Eq. 3, Sec. V-B, Tables VI and VIII).

Every module maps a feature tensor of shape ``[..., d]`` to an adjustment ``v`` of the same
shape, acting on the last dimension. None of them has a final activation (Sec. IV-A: "we remove
the final activation layer", since adjustments may be negative).

* :class:`MLPAdjuster` - the paper's choice throughout: ``arch=(100, 32, 16)`` means
  ``Linear(d,100), Linear(100,32), Linear(32,16), Linear(16,d)``. The paper implies activations
  between the layers (default ReLU); the authors' code has none (``activation=None``), which makes
  h one affine map written as a product of matrices.
* :class:`CNNAdjuster` - Table VIII: the d-dim feature reshaped to a square 2-D map (zero-padded
  when d is not a square), 3x3 convolutions with the given channel widths, adaptive pooling to
  1x1, then a final linear layer to d.
* :class:`NoiseAdjuster` - Table VI: ``v`` drawn from U(-1, 1) or N(0, 1), no parameters.

Initialisation and noise use a private :class:`torch.Generator` seeded by ``seed``, so building or
using an adjuster never consumes the global RNG (this is what makes ``alpha=0`` bit-identical to
standard training).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def _activation(name: str | None) -> nn.Module | None:
    if name is None or name == "none":
        return None
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)} or None "
            "(None reproduces the authors' code: no activation between layers)"
        ) from None


@contextlib.contextmanager
def _private_rng(seed: int) -> Iterator[None]:
    """Build (and default-initialise) layers from a seeded CPU RNG, then restore its state.

    Only the CPU default generator is touched (``torch.manual_seed`` would also reseed every
    CUDA generator); its state is restored on exit, so the caller's streams are untouched.
    """
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


class MLPAdjuster(nn.Module):
    """h as an MLP (Eq. 3; Sec. V-B notation ``(#1-#2-...-#N)`` = N+1 linear maps).

    The layers are ``nn.Linear`` layers with their default initialisation, but their weights and
    biases live in one flat parameter, ``flat`` (layer by layer, each weight row-major then its
    bias), split into views in :meth:`forward`. Training gives the same numbers as separate
    parameters (every optimizer here updates element by element), while the optimizer and
    ``zero_grad`` handle one tensor instead of 2(N+1): on CPU, ``foreach`` optimizers loop over
    tensors, and for the small models of Table V that loop cost more than h's arithmetic
    (Table VII). :meth:`layers` gives the per-layer views; checkpoints written with separate
    ``net.<i>.weight``/``net.<i>.bias`` entries still load.

    Args:
        dim: feature dimension d (input and output).
        arch: hidden widths, e.g. ``(100, 32, 16)``; ``()`` gives a single ``Linear(d, d)``.
        activation: activation between layers (``"relu"`` default); ``None`` = authors' code.
        seed: seed of h's private initialisation RNG.
    """

    def __init__(
        self, dim: int, arch: Sequence[int] = (100, 32, 16), activation: str | None = "relu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        widths = [int(dim), *map(int, arch), int(dim)]
        with _private_rng(seed):
            linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.shapes: tuple[tuple[int, int], ...] = tuple(
            (b, a) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.sizes: tuple[int, ...] = tuple(n for o, i in self.shapes for n in (o * i, o))
        self.flat = nn.Parameter(torch.cat(
            [t.detach().reshape(-1) for lin in linears for t in (lin.weight, lin.bias)]))
        self.act = _activation(activation)
        self.dim = int(dim)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(weight [out, in], bias [out]), ...]``: views of :attr:`flat`, one per linear map."""
        parts = self.flat.split(self.sizes)
        return [(parts[2 * k].view(shape), parts[2 * k + 1]) for k, shape in enumerate(self.shapes)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        layers = self.layers()
        for k, (weight, bias) in enumerate(layers):
            z = F.linear(z, weight, bias)
            if self.act is not None and k < len(layers) - 1:
                z = self.act(z)
        return z

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        old = [f"{prefix}net.{k}.{t}" for k in range(2 * len(self.shapes)) for t in ("weight", "bias")]
        old = [k for k in old if k in state_dict]
        if old and f"{prefix}flat" not in state_dict:  # separate nn.Linear parameters
            state_dict[f"{prefix}flat"] = torch.cat([state_dict.pop(k).reshape(-1) for k in old])
        super()._load_from_state_dict(state_dict, prefix, *args)


class CNNAdjuster(nn.Module):
    """h as a small CNN over the feature laid out as a square map (Table VIII).

    ``arch=(256, 64)`` is a 3x3 convolution with 256 kernels followed by one with 64 kernels
    (padding 1, the activation after each convolution), adaptive average pooling to 1x1 and a
    final ``Linear(64, d)`` (no final activation).
    """

    def __init__(
        self, dim: int, arch: Sequence[int] = (256,), activation: str | None = "relu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(arch) == 0:
            raise ValueError("CNNAdjuster needs at least one convolution width in arch")
        self.dim = int(dim)
        self.side = math.isqrt(self.dim - 1) + 1 if self.dim > 1 else 1
        layers: list[nn.Module] = []
        chans = [1, *map(int, arch)]
        with _private_rng(seed):
            for a, b in zip(chans[:-1], chans[1:], strict=True):
                layers.append(nn.Conv2d(a, b, kernel_size=3, padding=1))
                act = _activation(activation)
                if act is not None:
                    layers.append(act)
            self.head = nn.Linear(chans[-1], self.dim)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        flat = z.reshape(-1, self.dim)
        pad = self.side * self.side - self.dim
        if pad:
            flat = nn.functional.pad(flat, (0, pad))
        x = flat.reshape(-1, 1, self.side, self.side)
        x = self.pool(self.features(x)).flatten(1)
        return self.head(x).reshape(*lead, self.dim)


class NoiseAdjuster(nn.Module):
    """Random-noise "adjuster" of Table VI: ``v ~ U(-1, 1)`` or ``v ~ N(0, 1)``, no parameters.

    Noise is drawn from a private generator (one per device), seeded by ``seed``.
    """

    def __init__(self, dim: int, distribution: str = "normal", seed: int = 0) -> None:
        super().__init__()
        if distribution not in ("uniform", "normal"):
            raise ValueError(f"noise distribution must be 'uniform' or 'normal', got {distribution!r}")
        self.dim = int(dim)
        self.distribution = distribution
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        gen = self._generator(z.device)
        if self.distribution == "normal":
            return torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
        return torch.rand(z.shape, generator=gen, device=z.device, dtype=z.dtype) * 2 - 1

    def get_extra_state(self) -> dict:
        return {k: g.get_state() for k, g in self._generators.items()}

    def set_extra_state(self, state: dict) -> None:
        for dev, s in (state or {}).items():
            self._generator(torch.device(dev)).set_state(s)


def build_adjuster(
    kind: str, dim: int, arch: Sequence[int] = (100, 32, 16), activation: str | None = "relu",
    seed: int = 0,
) -> nn.Module:
    """Build h by name: ``"mlp"`` (default), ``"cnn"`` (Table VIII), ``"uniform"``/``"normal"`` (Table VI)."""
    if kind == "mlp":
        return MLPAdjuster(dim, arch, activation, seed)
    if kind == "cnn":
        return CNNAdjuster(dim, arch, activation, seed)
    if kind in ("uniform", "normal"):
        return NoiseAdjuster(dim, kind, seed)
    raise ValueError(f"unknown adjuster {kind!r}; use 'mlp', 'cnn', 'uniform' or 'normal'")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (the "# of parameters" of Tables I-IV and VIII)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
