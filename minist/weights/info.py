"""Describe a minist weight file in words: ``minist weights info FILE``."""

from __future__ import annotations

import os
from pathlib import Path

from minist.architectures import BLOCK_CHANNELS, conv_shapes
from minist.weights.store import VGGWeights, load_weights, sha256_of


def _layer_table(weights: VGGWeights) -> list[str]:
    rows = [("layer", "weight shape", "bias shape", "parameters")]
    for name, (w, b) in weights.params.items():
        rows.append((name, str(tuple(w.shape)), str(tuple(b.shape)), f"{w.size + b.size:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=False)]
        lines.append("  " + "  ".join(cells) + "  " + row[3].rjust(widths[3]))
    return lines


def completeness(weights: VGGWeights) -> str:
    """``complete (16 conv layers)`` or ``partial: 8 of 16 conv layers, up to conv3_4``."""
    total = len(conv_shapes(weights.architecture, weights.block_channels))
    if weights.is_complete:
        return f"complete ({total} conv layers)"
    last = list(weights.params)[-1]
    return f"partial: {len(weights.params)} of {total} conv layers, up to {last}"


def summary_line(path: str | os.PathLike) -> str:
    """One line for the end of a conversion or download."""
    weights = load_weights(path)
    return (
        f"wrote {path}: {weights.architecture}, {completeness(weights)}, "
        f"{weights.parameter_count:,} parameters, expects {weights.preprocessing.describe()}"
    )


def weights_info(path: str | os.PathLike) -> str:
    """Architecture, completeness, preprocessing, source, licence, per-layer table, size, sha256."""
    weights = load_weights(path)
    size = Path(path).stat().st_size
    lines = [
        f"file:           {path}",
        f"architecture:   {weights.architecture}",
        f"layers:         {completeness(weights)}",
        f"preprocessing:  {weights.preprocessing.describe()}",
        f"source:         {weights.source}",
        f"license:        {weights.license}",
    ]
    if weights.block_channels != BLOCK_CHANNELS:
        lines.append(f"block widths:   {weights.block_channels}")
    lines += _layer_table(weights)
    lines += [
        f"parameters:     {weights.parameter_count:,}",
        f"file size:      {size:,} bytes ({size / 2**20:.1f} MiB)",
        f"sha256:         {sha256_of(path)}",
    ]
    return "\n".join(lines)
