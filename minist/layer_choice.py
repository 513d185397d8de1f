r"""The default style layers for an image size: the paper's five, less those that see too much.

**Why the balance shifts with the size.** A VGG unit's receptive field is fixed in *pixels*
(:func:`minist.scales.receptive_fields`): ``relu3_1`` sees 24 px, ``relu4_1`` 60 px (VGG-19:
68), ``relu5_1`` 132 px (VGG-19: 156). The style representation of a layer is the Gram matrix of
what its units see (Eq. 3), and the style image is resized with the content (``--style-scale``
times ``--size``). At 512 px ``relu5_1``'s units see a quarter of the picture's width; at 256 px
they see half of it -- and ``relu4_1``'s a quarter. A Gram matrix of features that see a large
part of the picture describes the painting's *composition* (where its moon, its swirls, its
cypress are), and matching it paints that composition over the photograph: at 256 px the church
tower and the outlines of the houses of the classic tubingen x starry_night pair disappear.
Neither the style weight β nor the normalised terms are the lever: the loss terms are
normalised per layer (:mod:`minist.stylize`), so β = 1000, 300 and 30 give nearly the same
painted image at 256 px (measured; README "Defaults").

**The rule.** Keep a style layer when its receptive field is at most a fifth of the image's
longest side,

.. math::

    \mathcal L_{\text{style}}(s) = \{\, l \in \text{relu1\_1} \dots \text{relu5\_1} :
        r_l \le s / 5 \,\}, \qquad\text{at least relu1\_1},

with :math:`s` the size of the scale being optimised (every scale of a coarse-to-fine run
chooses its own). For VGG-16 and VGG-19 alike: 128 px -- relu1_1 to relu3_1; 256 px -- the
same; 512 px -- relu1_1 to relu4_1; from 660 px (VGG-16; VGG-19 from 780 px) -- all five, as
in the paper. The fifth is measured, not derived: at 256 px relu4_1 (a quarter of the side)
still paints the painting's composition over the houses, at 512 px relu4_1 (an eighth) does
not.

An explicit ``--style-layers`` list is used as given, at every size: the paper's Fig. 3 (layer
sets x α/β) stays available (``tutorials/sweeps/fig3_layers_weights.toml``). Tutorial:
``tutorials/10_coarse_to_fine`` (section 1, receptive fields in pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

from minist.errors import MinistError
from minist.scales import receptive_fields

AUTO = "auto"  # the option's value that asks for this rule
PAPER_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
FIELD_FRACTION = 0.2  # a style layer's receptive field may cover at most this much of the side


def is_auto(style_layers) -> bool:
    """Whether a ``style_layers`` option asks for the size-dependent default."""
    return isinstance(style_layers, str) and style_layers == AUTO


def style_layers_for_size(layer_specs, size: int, candidates: Sequence[str] = PAPER_STYLE_LAYERS,
                          fraction: float = FIELD_FRACTION) -> tuple[str, ...]:
    r"""The layers of ``candidates`` whose receptive field :math:`r_l \le` ``fraction`` ×
    ``size`` (at least the first candidate), in the candidates' order; candidates the
    network lacks are left out.

    ``layer_specs``: the network's layer table (``VGG.layer_specs``); ``size``: the longest
    side, px, of the image being optimised.
    """
    fields = receptive_fields(layer_specs)
    present = [name for name in candidates if name in fields]
    if not present:
        raise MinistError(f"--style-layers {AUTO}: the network has none of "
                          f"{', '.join(candidates)}; name its layers")
    chosen = tuple(name for name in present if fields[name] <= fraction * size)
    return chosen or tuple(present[:1])


def resolve_style_layers(style_layers, layer_specs, size: int) -> tuple[str, ...]:
    """The style layers a run uses at ``size``: the option as given, or the rule for ``auto``."""
    if is_auto(style_layers):
        return style_layers_for_size(layer_specs, size)
    return tuple(style_layers)
