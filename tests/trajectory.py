"""Small style transfers whose losses and final images were recorded before the driver was
restructured (issue "Make room before building"), to prove that behaviour did not change.

``python tests/trajectory.py`` writes ``tests/data/trajectory.npz`` (do this only when the
behaviour is *meant* to change, and say so in the commit). The record carries a fingerprint of
the machine and BLAS it was made on: same code, same seed, same machine gives the same bits
(the README's reproducibility promise); elsewhere BLAS may sum in another order, so the test
compares with a tolerance there.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

RECORD = Path(__file__).resolve().parent / "data" / "trajectory.npz"
# Narrow VGG-19 whose layers from conv1_2 on have >= 16 input channels: every convolution path
# of the real network runs (im2col for conv1_1, Winograd with fused ReLU and pool masks after).
CHANNELS = (16, 16, 24, 24, 32)
CASES = {
    "lbfgs": dict(optimizer="lbfgs", iters=10, tv_weight=0.05, init="content"),
    "adam": dict(optimizer="adam", iters=8, init="noise", seed=3, noise_ratio=0.0,
                 style_scale=1.25, pooling="avg"),
}


def _images():
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:44, 0:60].astype(np.float32) / 60
    content = np.stack([0.5 + 0.4 * np.sin(4 * x + 3 * y + p) for p in (0.0, 1.0, 2.0)])
    content = np.clip(content + rng.uniform(-0.05, 0.05, content.shape), 0, 1)
    style = rng.uniform(0, 1, size=(3, 40, 40))
    return content[None].astype(np.float32), style[None].astype(np.float32)


def run_case(name: str) -> dict[str, np.ndarray]:
    """Run one case; return its per-iteration losses (iter, 4) and final image."""
    from minist.bench import synthetic_weights
    from minist.layer_choice import PAPER_STYLE_LAYERS
    from minist.stylize import StyleTransfer
    from minist.vgg import VGG

    options = dict(CASES[name])
    net = VGG(synthetic_weights("vgg19", CHANNELS), pooling=options.pop("pooling", "max"))
    content, style = _images()
    # The paper's five style layers, named: the recorded behaviour (the default became
    # size-dependent later, on purpose: minist.layer_choice).
    st = StyleTransfer(content, style, network=net, size=60, style_layers=PAPER_STYLE_LAYERS,
                       **options)
    image = st.run()
    losses = np.array([[r.content, r.style, r.tv, r.total] for r in st.history], np.float64)
    return {f"{name}_losses": losses, f"{name}_image": image}


def fingerprint() -> str:
    """The machine and libraries whose arithmetic the record holds."""
    import numba

    from minist.threads import blas_threads

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return (f"{cpu} | numpy {np.__version__} | {config.get('name')} {config.get('version')} | "
            f"{blas_threads()} BLAS threads | numba {numba.__version__} "
            f"({numba.get_num_threads()} threads)")


def record() -> None:
    arrays = {}
    for name in CASES:
        arrays.update(run_case(name))
    RECORD.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORD, fingerprint=np.array(fingerprint()), **arrays)
    print(f"wrote {RECORD} ({fingerprint()})")


if __name__ == "__main__":
    record()
