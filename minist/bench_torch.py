r"""The PyTorch side of ``minist bench --compare-torch``: the same iteration, written in PyTorch.

Imported only for ``--compare-torch``; PyTorch is never a dependency of minist (``pip install
'minist[bench]'`` adds it). Everything matches :class:`minist.bench.MinistStep`:

* the network: VGG-19's convolutions (the *same* synthetic weights, shared with NumPy on the
  CPU), ReLU and 2x2 max pooling, up to ``relu5_1``; the input preprocessing
  :math:`x = (s\,I_{\pi} - \mu)/\sigma`;
* the losses of :class:`minist.stylize.StyleTransfer` with ``normalize=True``: per layer
  :math:`\tfrac12\sum (F - P)^2 / \sum P^2` (content, ``relu4_2``) and
  :math:`\sum (G - A)^2 / \sum A^2` with :math:`G = F F^\top / M` (style, five layers, weights
  1/5), total :math:`\alpha L_c + \beta L_s` with :math:`\alpha = 1, \beta = 10^3`;
* ``torch.optim.Adam`` (lr 0.01, betas (0.9, 0.999), eps 1e-8) on the image, then the image is
  clamped to [0, 1] (minist's projection); autograd computes no weight gradients
  (``requires_grad=False``), as minist does not.

The ReLUs run in place, as in torchvision's VGG, which is how PyTorch style transfer code
usually runs. The loss at the first iteration is printed beside minist's: the two agree to
float32 rounding, which shows the same work is being timed.
"""

from __future__ import annotations

from minist.architectures import layer_table
from minist.bench import CpuMemory, synthetic_images
from minist.errors import MinistError
from minist.layer_choice import PAPER_STYLE_LAYERS
from minist.stylize import DEFAULT_CONTENT_LAYERS, StylizeOptions
from minist.weights.store import VGGWeights


def require_torch():
    """The ``torch`` module, or one line saying how to install it."""
    try:
        import torch
    except ImportError:
        raise MinistError(
            "--compare-torch: PyTorch is not installed; install it with "
            "pip install 'minist[bench]' (or pip install torch), or leave out --compare-torch"
        ) from None
    return torch


class TorchStep:
    """One style transfer iteration in PyTorch per :meth:`step` (module docstring)."""

    name = "torch"

    def __init__(self, weights: VGGWeights, size: int, device: str, seed: int = 0):
        torch = self.torch = require_torch()
        self.device = device
        dev = torch.device(device)
        o = StylizeOptions()
        self.alpha, self.beta = o.content_weight, o.style_weight
        self.content_layers, self.style_layers = DEFAULT_CONTENT_LAYERS, PAPER_STYLE_LAYERS
        wanted = set(self.content_layers) | set(self.style_layers)
        table = layer_table(weights.architecture, weights.block_channels)
        deepest = max(i for i, spec in enumerate(table) if spec.name in wanted)
        self.layer_specs = table[: deepest + 1]

        def tensor(a):  # the NumPy arrays themselves on the CPU (no copy), a copy on the GPU
            return torch.from_numpy(a).to(dev)

        self.params = {name: (tensor(w), tensor(b)) for name, (w, b) in weights.params.items()}
        prep = weights.preprocessing
        self.bgr = prep.channel_order == "BGR"
        self.scale = torch.tensor([prep.pixel_scale / s for s in prep.std],
                                  device=dev).reshape(1, 3, 1, 1)
        self.shift = torch.tensor([m / s for m, s in zip(prep.mean, prep.std, strict=True)],
                                  device=dev).reshape(1, 3, 1, 1)

        content, style = synthetic_images(size, seed)
        content, style = tensor(content.copy()), tensor(style.copy())
        with torch.no_grad():
            feats = self.features(content)
            self.P = {k: feats[k].clone() for k in self.content_layers}
            feats = self.features(style)
            self.A = {k: self.gram(feats[k]) for k in self.style_layers}
            del feats
        # normalize=True: divide each layer's loss by its target's energy (minist.stylize).
        self.c_scale = {k: 1.0 / len(self.content_layers) / float((P * P).sum())
                        for k, P in self.P.items()}
        self.s_scale = {k: 1.0 / len(self.style_layers) * 4.0 * A.shape[0] ** 2
                        / float((A * A).sum()) for k, A in self.A.items()}
        self.image = content.clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.image], lr=0.01, betas=(0.9, 0.999), eps=1e-8)

    def features(self, image):
        """Activations of the requested layers (network input: the preprocessed image)."""
        F = self.torch.nn.functional
        x = (image.flip(1) if self.bgr else image) * self.scale - self.shift
        out = {}
        wanted = set(self.content_layers) | set(self.style_layers)
        for spec in self.layer_specs:
            if spec.kind == "conv":
                w, b = self.params[spec.name]
                x = F.conv2d(x, w, b, padding=1)
            elif spec.kind == "relu":
                x = F.relu(x, inplace=True)
            else:
                x = F.max_pool2d(x, 2, 2)
            if spec.name in wanted:
                out[spec.name] = x
        return out

    def gram(self, x):
        """G = F F^T / M for a (1, N, H, W) activation: a torch tensor (torch's own operations,
        which refuse a NumPy array: in a student's copy this is no Gram matrix to borrow)."""
        Fm = self.torch.flatten(x, start_dim=2)[0]
        return self.torch.mm(Fm, Fm.t()) / Fm.shape[1]

    def loss(self, image):
        torch = self.torch
        feats = self.features(image)
        content = sum(self.c_scale[k] * 0.5 * torch.sum(torch.square(feats[k] - P))
                      for k, P in self.P.items())
        style = sum(self.s_scale[k] * torch.sum(torch.square(self.gram(feats[k]) - A))
                    / (4 * A.shape[0] ** 2) for k, A in self.A.items())
        return self.alpha * content + self.beta * style

    def step(self) -> float:
        """One iteration: loss, backward, Adam, clamp; return the loss it started from."""
        self.optimizer.zero_grad(set_to_none=True)
        total = self.loss(self.image)
        total.backward()
        self.optimizer.step()
        with self.torch.no_grad():
            self.image.clamp_(0.0, 1.0)
        return float(total.detach())

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()


class TorchCudaMemory:
    """Peak of ``torch.cuda.memory_allocated`` above its value before the run was built."""

    def __init__(self):
        import torch

        self.torch = torch
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        self.base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        self.high = self.base

    def start_step(self) -> None:
        pass

    def end_step(self) -> None:
        self.high = max(self.high, self.torch.cuda.max_memory_allocated())

    @property
    def peak(self) -> int:
        return self.high - self.base

    def close(self) -> None:
        pass


def memory_probe(device: str):
    return TorchCudaMemory() if device == "cuda" else CpuMemory()
