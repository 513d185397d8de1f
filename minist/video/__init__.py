"""Video for ``minist video`` (Ruder, Dosovitskiy & Brox 2016): clips in and out
(:mod:`minist.video.frames`) and the optical flow between frames (:mod:`minist.video.flow`);
the equations that use the flow are in :mod:`minist.temporal`.

Both parts rest on the optional extra ``video`` (``pip install 'minist[video]'``): PyAV for
FFmpeg's decoders and encoders, opencv-contrib for the flow. Nothing here imports them at import
time -- ``import minist`` and ``import minist.video`` work without the extra; the first call that
needs one imports it through :func:`require_av` / :func:`require_cv2`, which turn a missing
library into one line that says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from minist.errors import MinistError

INSTALL_HINT = "pip install 'minist[video]'"


def _require(module: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MinistError(f"minist video needs {what}, which is not installed: "
                          f"{INSTALL_HINT}") from None


def require_av() -> ModuleType:
    """PyAV (``av``), FFmpeg's Python binding, or one line saying how to install it."""
    return _require("av", "PyAV (video files)")


def require_cv2() -> ModuleType:
    """OpenCV (``cv2``, with contrib's ``cv2.optflow``), or one line saying how to install it."""
    return _require("cv2", "OpenCV (optical flow)")
