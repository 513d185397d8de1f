"""VGG-16 / VGG-19 feature extractor with a hand-written backward pass to the input image.

The network is the list of layers in :func:`minist.architectures.layer_table`; each is one of
minist's layers (``conv2d``, ``relu``, ``max``/``avg`` pooling), preceded by the weights' input
preprocessing (:mod:`minist.preprocessing`). Writing ``f_k`` for layer ``k`` and ``x_0`` for the
preprocessed image ``T(I)``, the forward pass is the composition

.. math::

    x_k = f_k(x_{k-1}), \\qquad k = 1, \\dots, K,

where ``K`` is the index of the deepest requested layer: the forward stops there, because style
transfer never looks deeper. The backward pass is the chain rule run in reverse. Given a loss
``L = sum_l L_l(x_l)`` over the requested layers ``l``, the gradient reaching ``x_k`` is

.. math::

    \\bar{x}_k = \\frac{\\partial L_k}{\\partial x_k} + J_{f_{k+1}}^{\\top} \\, \\bar{x}_{k+1},

i.e. the gradient handed in at layer ``k`` (if any) *plus* what flows back from above; the
backward accumulates exactly there. Finally :math:`\\bar{I} = J_T^{\\top} \\bar{x}_0` goes through
the preprocessing, so the result is the gradient with respect to the RGB image in [0, 1].
A convolution and the ReLU after it run as one operation (:func:`minist.layers.conv2d_relu_forward`)
unless the convolution's own output is asked for: the same composition, one array and one pass
over memory less. Before a max pooling, the ReLU's mask is taken from the pooling's output in the
backward pass (:func:`minist.layers.relu_max_pool_backward`), so the ReLU's output is not kept.
Shapes: image (N, 3, H, W); the activation of a layer in block b is
(N, C_b, H / 2^(b-1), W / 2^(b-1)) (pooling floors odd sizes).

Tutorial: ``tutorials/03_vgg_features`` walks through this file.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minist.architectures import LayerSpec, layer_table
from minist.backend import RUN_DTYPE, resolve_device, to_device
from minist.errors import MinistError
from minist.execution import ExecutionConfig
from minist.layers import (
    ConvReluCache,
    ReluMaxPoolCache,
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
    pool_backward,
    pool_forward,
    relu_backward,
    relu_forward,
    relu_max_pool_backward,
)
from minist.preprocessing import Preprocessing, preprocess_backward, preprocess_forward
from minist.weights.store import VGGWeights

POOLINGS = ("max", "avg")


class VGGCache(NamedTuple):
    """What the backward pass needs: the preprocessing cache and one cache per operation run."""

    preprocess: object
    layer_caches: tuple  # ((LayerSpec, layer cache), ...) in forward order
    layers: tuple  # the requested layer names


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise MinistError(f"--pooling: unknown pooling {pooling!r}; choose max or avg")
    return pooling


def runnable_layers(table: list[LayerSpec], params: dict) -> list[LayerSpec]:
    """The layers that ``params`` can compute: everything before the first missing convolution."""
    layer_specs = []
    for spec in table:
        if spec.kind == "conv" and spec.name not in params:
            break
        layer_specs.append(spec)
    return layer_specs


class Operation(NamedTuple):
    """One operation of :func:`vgg_forward`: a layer, or a convolution and its ReLU run as one.

    ``kind``: ``"conv"``, ``"conv_relu"``, ``"relu"`` or ``"pool"``; ``spec``: the layer whose
    output the operation produces (the ReLU's for ``conv_relu``); ``conv``: the fused convolution.
    ``pool_mask``: on a ``conv_relu`` operation, its ReLU's mask is taken from the max pooling that
    follows (its output is not kept); on that pooling operation, it applies that mask.
    """

    kind: str
    spec: LayerSpec
    conv: LayerSpec | None = None
    pool_mask: bool = False


def plan_operations(layer_specs: list[LayerSpec], wanted, pooling: str) -> list[Operation]:
    """How :func:`vgg_forward` runs ``layer_specs``: a convolution and the ReLU after it are fused
    unless the convolution's output is requested; the ReLU's mask comes from a following max
    pooling unless the ReLU's output is requested (then it is kept anyway)."""
    plan, k = [], 0
    while k < len(layer_specs):
        spec = layer_specs[k]
        if (spec.kind == "conv" and k + 1 < len(layer_specs) and layer_specs[k + 1].kind == "relu"
                and spec.name not in wanted):
            k += 1
            relu = layer_specs[k]
            pool_mask = (pooling == "max" and k + 1 < len(layer_specs)
                         and layer_specs[k + 1].kind == "pool" and relu.name not in wanted)
            plan.append(Operation("conv_relu", relu, spec, pool_mask))
        else:
            after_masked = spec.kind == "pool" and bool(plan) and plan[-1].pool_mask
            plan.append(Operation(spec.kind, spec, None, after_masked))
        k += 1
    return plan


def vgg_forward(image, params, layer_specs, preprocessing: Preprocessing, layers, pooling="max", *,
                config: ExecutionConfig | None = None, weight_caches: dict | None = None):
    """Run the network on ``image`` up to the deepest of ``layers``; return their activations.

    ``image``: (N, 3, H, W) RGB in [0, 1]. ``params``: conv name -> (weight, bias) on the image's
    device, in its dtype. ``layer_specs``: the layer table (the run stops at the deepest requested
    layer). ``config``: how the layers run (:mod:`minist.execution`); ``weight_caches``: conv
    name -> the dict where that layer's Winograd weight transforms are kept (weights that do not
    change). Returns ``(features, cache)`` with ``features[name]`` the activation of each
    requested layer (do not modify them in place: the cache shares their memory).
    """
    wanted = set(layers)
    names = [spec.name for spec in layer_specs]
    deepest = max(names.index(name) for name in wanted)
    weight_caches = weight_caches or {}
    x, prep_cache = preprocess_forward(image, preprocessing)  # x_0 = T(I)
    features, caches = {}, []
    for op in plan_operations(layer_specs[: deepest + 1], wanted, pooling):  # x_k = f_k(x_{k-1})
        spec = op.spec
        if op.kind == "conv_relu":  # conv and ReLU in one operation: one array, one pass less
            w, b = params[op.conv.name]
            x, cache = conv2d_relu_forward(x, w, b, stride=1, pad=1, config=config,
                                           weight_cache=weight_caches.get(op.conv.name))
            if op.pool_mask:
                cache = cache._replace(relu=None)  # the pool's backward applies the mask
        elif op.kind == "conv":
            w, b = params[spec.name]
            x, cache = conv2d_forward(x, w, b, stride=1, pad=1, config=config,
                                      weight_cache=weight_caches.get(spec.name))
        elif op.kind == "relu":
            x, cache = relu_forward(x)
        else:
            x, cache = pool_forward(x, pooling, kernel=2, stride=2, config=config)
            if op.pool_mask:
                cache = ReluMaxPoolCache(cache, x)  # the ReLU's mask, from the pool's output
        caches.append((spec, cache))
        if spec.name in wanted:
            features[spec.name] = x
    return features, VGGCache(prep_cache, tuple(caches), tuple(layers))


def vgg_backward(grads, cache: VGGCache):
    """Gradient of ``sum_l <grads[l], x_l>`` with respect to the RGB image (equations above).

    ``grads``: the gradients handed in at the layers, either a mapping from any subset of the
    layers the forward returned to arrays of their shapes, or a function ``gradient_at(name)``
    that the backward calls once at each layer it passes, deepest first, and that returns the
    gradient at that layer or None (:class:`minist.objective.LayerGradients` computes each loss
    gradient only then, so that one exists at a time).
    """
    if callable(grads):
        gradient_at = grads
    else:
        unknown = set(grads) - set(cache.layers)
        if unknown:
            raise ValueError(
                f"gradients given for layers the forward did not return: {sorted(unknown)}"
            )
        gradient_at = grads.get
    dx, ours = None, False  # ours: dx is an array this function made (may be added to in place)
    for spec, layer_cache in reversed(cache.layer_caches):
        g = gradient_at(spec.name)  # asked for once, when needed (it may be computed only now)
        if g is not None:  # accumulate where the chain passes a requested layer
            if dx is None:
                dx = g
            elif ours:
                dx += g
            else:
                dx, ours = dx + g, True
        if dx is None:  # nothing flows back from above this layer yet
            continue
        ours = True  # every backward below returns a new array
        if isinstance(layer_cache, ConvReluCache):  # a fused conv + ReLU operation
            dx, _, _ = conv2d_relu_backward(dx, layer_cache)
        elif spec.kind == "conv":
            dx, _, _ = conv2d_backward(dx, layer_cache)
        elif spec.kind == "relu":
            dx = relu_backward(dx, layer_cache)
        elif isinstance(layer_cache, ReluMaxPoolCache):  # pooling and the ReLU below it
            dx = relu_max_pool_backward(dx, layer_cache)
        else:
            dx = pool_backward(dx, layer_cache)
    if dx is None:
        raise ValueError("no gradient given for any layer")
    return preprocess_backward(dx, cache.preprocess)  # \bar{I} = J_T^T \bar{x}_0


def _frozen(array):
    """A read-only copy of a NumPy array (a CuPy array has no read-only flag: kept as it is).

    The network's weights never change during a run; that is what lets it keep their Winograd
    transforms (``weight_caches``) instead of computing them at every call.
    """
    if not isinstance(array, np.ndarray):
        return array
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


class VGG:
    """A VGG network with loaded weights on one device, ready for forward and backward passes.

    >>> net = VGG(load_weights("weights/vgg16.h5"), device="cpu", pooling="max")
    >>> feats, cache = net.forward(image, ["relu1_1", "relu4_2"])
    >>> d_image = net.backward({"relu4_2": g42, "relu1_1": g11}, cache)

    ``backward`` also takes a function ``gradient_at(layer) -> array or None`` instead of the
    mapping (:func:`vgg_backward`): :class:`minist.objective.LayerGradients` hands each loss
    gradient over only when the backward pass reaches its layer.
    """

    def __init__(self, weights: VGGWeights, device: str | None = None, dtype=RUN_DTYPE,
                 pooling="max", config: ExecutionConfig | None = None):
        """``config``: how the layers run (:mod:`minist.execution`; default: the defaults for
        ``device``, which defaults to the config's device or ``"cpu"``)."""
        if config is None:
            config = ExecutionConfig(device=device or "cpu")
        elif device is not None and device != config.device:
            raise ValueError(f"device {device!r} differs from the config's {config.device!r}")
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = dtype
        self.pooling = check_pooling(pooling)
        self.architecture = weights.architecture
        self.preprocessing = weights.preprocessing
        self.source = weights.source
        self.params = {
            name: (
                _frozen(to_device(w, self.device, dtype)),
                _frozen(to_device(b, self.device, dtype)),
            )
            for name, (w, b) in weights.params.items()
        }
        # Where each layer's Winograd weight transforms are kept: beside the weights, for the
        # network's lifetime (the weights never change).
        self.weight_caches = {name: {} for name in self.params}
        self.layer_specs = runnable_layers(
            layer_table(weights.architecture, weights.block_channels), self.params
        )
        self.layer_names = [spec.name for spec in self.layer_specs]

    def check_layers(self, layers) -> list[str]:
        """Validate requested layer names; one-line error for unknown or unreachable layers."""
        layers = list(dict.fromkeys(layers))
        if not layers:
            raise MinistError("no layers requested")
        all_names = [spec.name for spec in layer_table(self.architecture)]
        for name in layers:
            if name not in all_names:
                raise MinistError(
                    f"unknown layer {name!r} for {self.architecture}; layers are "
                    f"{all_names[0]} ... {all_names[-1]} (convN_M, reluN_M, poolN)"
                )
            if name not in self.layer_names:
                raise MinistError(
                    f"layer {name!r} is deeper than the weights reach ({self.source} ends at "
                    f"{self.layer_names[-1]})"
                )
        return layers

    def minimum_input_size(self, layers) -> int:
        """Smallest image side (px) for which every requested layer has at least one position."""
        layers = self.check_layers(layers)
        deepest = max(self.layer_names.index(name) for name in layers)
        pools = sum(1 for spec in self.layer_specs[: deepest + 1] if spec.kind == "pool")
        return 2**pools

    def forward(self, image, layers):
        layers = self.check_layers(layers)
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image of shape (N, 3, H, W), got {tuple(image.shape)}")
        smallest = min(image.shape[2:])
        needed = self.minimum_input_size(layers)
        if smallest < needed:
            raise MinistError(
                f"image is {image.shape[3]}x{image.shape[2]} px, too small for layer "
                f"{layers[-1] if len(layers) == 1 else 'set ' + ','.join(layers)}: "
                f"needs at least {needed} px on each side"
            )
        image = to_device(image, self.device, self.dtype)
        with self.config.scope():
            return vgg_forward(image, self.params, self.layer_specs, self.preprocessing, layers,
                               self.pooling, config=self.config, weight_caches=self.weight_caches)

    def backward(self, grads: dict, cache: VGGCache):
        with self.config.scope():
            return vgg_backward(grads, cache)
