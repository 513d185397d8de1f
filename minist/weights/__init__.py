"""Weight files: minist's HDF5 layout, converters from other formats, download and inspection."""

from minist.weights.store import VGGWeights, load_weights, save_weights

__all__ = ["VGGWeights", "load_weights", "save_weights"]
