"""Experiment scripts of the GAL suite (one module per table / figure of the paper).

Run them from the repository root, e.g. ``python -m experiments.regression --profile cpu`` (Table V,
Sec. V-B). Shared training helpers live in :mod:`experiments.common`; configs in ``configs/``.
"""
