"""Small helpers shared by the lessons: which weights and images to use, where figures go.

Every lesson runs on what the student has:

* weights: ``MINIST_WEIGHTS`` (a weight file in minist's layout) if set, else ``weights/vgg19.h5``
  or ``weights/vgg16.h5`` (fetched with ``minist weights fetch`` or converted with ``minist weights
  convert``); in the project's CI, the real VGG-16 in ``../shared/weights`` is converted on first
  use. Without any real weights a lesson falls back to random weights and says what it cannot
  show (:func:`find_weights` returns ``real=False``).
* images: your own (environment variables ``MINIST_CONTENT`` and ``MINIST_STYLE``), else the
  classic photos and paintings in ``../shared/data/images`` when present, else images that minist
  draws itself (:func:`drawn_content`, :func:`drawn_style`) — made here, so free to ship and use.
* size: ``MINIST_LESSON_SIZE`` (px, longest side) overrides each lesson's default; CI runs the
  lessons small (``MINIST_LESSON_FAST=1`` also cuts iteration counts).
* figures: written to ``tutorials/figures/<lesson>/`` (not committed: running the lesson makes
  them).
* this copy's ``minist`` comes first on ``sys.path`` (a student's copy, even when another minist
  is installed); the first run says when Numba compiles the kernels (``first_run``).
* a student's copy: each lesson starts with ``L.begin(LESSON, needs=...)``, which enters
  :class:`lesson` for the rest of the run: the exercises it needs (listed in its head) are named
  in one line when some are not written yet; inside it, ``to_device`` and ``two_loop`` (plumbing
  that lessons 03-07 run before lessons 07-08) run on their stand-ins (:mod:`minist.classroom`)
  until written -- and nothing else does. A section that needs an unwritten exercise asks
  :func:`ready` and is skipped with one line; should a lesson still reach an unwritten
  exercise, it stops there with one line naming the exercise and the section, not a traceback,
  and exits with status 0 (it ran what it could; the line says what to write).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

TUTORIALS = Path(__file__).resolve().parent
ROOT = TUTORIALS.parent
SHARED = ROOT.parent / "shared"
FIGURES = TUTORIALS / "figures"
FAST = os.environ.get("MINIST_LESSON_FAST", "") not in ("", "0")

if str(ROOT) in sys.path:  # this copy's minist first, whatever else is installed
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))

from first_run import announce_compilation  # noqa: E402

from minist.classroom import STUB_PREFIX, is_written, stand_ins_on  # noqa: E402

announce_compilation()


class lesson:  # noqa: N801 - used as a context manager, like contextlib's
    """The run of lesson ``name``: stand-ins on, and an unwritten exercise said in one line.

    ``needs``: the exercises the lesson runs (its own and earlier lessons'); on entering, those
    not written yet are named in one line. An exercise's ``NotImplementedError`` that reaches
    the end of the block is said in one line (:func:`stopped`) instead of a traceback.
    """

    def __init__(self, name: str, needs: tuple[str, ...] = ()):
        self.name, self.needs = name, tuple(needs)
        self._stand_ins = stand_ins_on()

    def __enter__(self):
        self._stand_ins.__enter__()
        from exercises import get

        # an exercise with a stand-in runs on it, and says so where it does
        missing = [m for m in self.needs if not written(m) and not get(m).stand_ins]
        if missing:
            say(f"[lesson {self.name}] runs exercises {', '.join(self.needs)}; not written yet: "
                f"{', '.join(missing)} -- what needs them is skipped, or the lesson stops "
                "where it needs one")
        return self

    def __exit__(self, kind, error, tb):
        self._stand_ins.__exit__(None, None, None)
        if error is not None and is_exercise_stub(error):
            say(stopped(error, tb))
            return True
        return False


def is_exercise_stub(error: BaseException) -> bool:
    """True for the ``NotImplementedError`` of an unwritten exercise function."""
    return isinstance(error, NotImplementedError) and str(error).startswith(STUB_PREFIX)


def _section_at(path: str, line: int) -> str:
    """The ``## `` heading of the lesson section that holds ``line`` of ``path``."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()[:line]
    except OSError:
        return ""
    for text in reversed(lines):
        if text.startswith("# ## "):
            return text[5:].strip()
    return ""


def stopped(error: BaseException, tb) -> str:
    """One line: which exercise stopped the lesson, in which section, and what to do."""
    import traceback

    where = ""
    for frame in reversed(traceback.extract_tb(tb)):
        path = Path(frame.filename).resolve()
        if path.parent == TUTORIALS and path.stem[:2].isdigit():
            section = _section_at(str(path), frame.lineno)
            where = (f' at section "{section}"' if section else "") + \
                f" ({path.name}, line {frame.lineno})"
            break
    message = str(error)
    marker = message.split(":", 1)[0].removeprefix("Exercise ").strip()
    what = message.split(":", 1)[1].split(";")[0].strip() if ":" in message else message
    return (f"[exercise {marker}] not written yet: the lesson stops{where}, which needs it. "
            f"{what[0].upper() + what[1:]}, check it with python tutorials/check.py {marker}, "
            "then run this lesson again.")


_running: list[lesson] = []


def begin(name: str, needs: tuple[str, ...] = ()) -> lesson:
    """Enter :class:`lesson` for the rest of this run (a script, or a notebook's kernel)."""
    import atexit

    for running in _running:  # a notebook cell run twice
        running.__exit__(None, None, None)
    _running[:] = [lesson(name, needs)]
    _running[0].__enter__()
    atexit.register(lambda: [r.__exit__(None, None, None) for r in _running])
    _catch_stubs()
    return _running[0]


def _catch_stubs() -> None:
    """An unwritten exercise that ends the run: one line, not a traceback (status 0)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        def handler(shell, kind, error, tb, tb_offset=None):
            if is_exercise_stub(error):
                say(stopped(error, tb))
                return None
            return shell.showtraceback((kind, error, tb), tb_offset=tb_offset)

        shell.set_custom_exc((NotImplementedError,), handler)
        return
    previous = sys.excepthook

    def hook(kind, error, tb):
        if not is_exercise_stub(error):
            previous(kind, error, tb)
            return
        say(stopped(error, tb))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # the lesson ran what it could; the line says what is missing

    sys.excepthook = hook


def ready(*markers: str, what: str) -> bool:
    """True when every exercise of ``markers`` is written; else say (one line) that ``what`` is
    skipped until the first unwritten one is, and return False."""
    for marker in markers:
        if not written(marker):
            not_yet(marker, what)
            return False
    return True


def written(marker: str) -> bool:
    """Whether every function of exercise ``marker`` is written (always, in the teacher's copy).

    In a student's copy a lesson runs before its own exercises are done; what needs one of them
    (and has no stand-in) checks this first and says what the student will see once it is
    written.
    """
    from exercises import get, resolve

    return all(is_written(resolve(spec)) for spec in get(marker).functions)


def not_yet(marker: str, what: str) -> None:
    """Say that ``what`` is skipped until the student writes exercise ``marker``."""
    from exercises import get

    say(f"[exercise {marker}] not written yet: skipping {what}. Write it ({get(marker).where}; "
        f"python tutorials/check.py {marker} checks it), then run this lesson again.")


def lesson_size(default: int) -> int:
    """Image size for a lesson: ``MINIST_LESSON_SIZE`` if set, else ``default``."""
    return int(os.environ.get("MINIST_LESSON_SIZE", default))


def iterations(normal: int, fast: int) -> int:
    """``fast`` iterations under ``MINIST_LESSON_FAST=1`` (CI), ``normal`` otherwise."""
    return fast if FAST else normal


def figure_dir(lesson: str) -> Path:
    """``tutorials/figures/<lesson>/``, created if needed."""
    path = FIGURES / lesson
    path.mkdir(parents=True, exist_ok=True)
    return path


class WeightsChoice(NamedTuple):
    path: Path
    real: bool  # False: random weights -- the lesson still runs but cannot show real features
    note: str


def find_weights(prefer: tuple[str, ...] = ("vgg19", "vgg16")) -> WeightsChoice:
    """The best weights the student has, converting ``../shared``'s VGG-16 on first use.

    ``MINIST_WEIGHTS`` names a file to use instead (random when its recorded source says so).
    """
    chosen = os.environ.get("MINIST_WEIGHTS")
    if chosen:
        from minist.weights.store import load_weights

        source = load_weights(chosen).source
        real = not source.lower().startswith("random")
        note = (f"weights from {chosen} (MINIST_WEIGHTS)" if real else
                f"RANDOM weights from {chosen} (MINIST_WEIGHTS): the features below show noise "
                "patterns, not what a trained network sees")
        return WeightsChoice(Path(chosen), real, note)
    weights_dir = ROOT / "weights"
    for arch in prefer:
        path = weights_dir / f"{arch}.h5"
        if path.is_file():
            return WeightsChoice(path, True, f"real {arch.upper()} weights from {path}")
    shared_pth = SHARED / "weights" / "vgg16-features.pth"
    if shared_pth.is_file():
        from minist.weights.convert import convert_weights

        out = weights_dir / "vgg16.h5"
        weights_dir.mkdir(exist_ok=True)
        convert_weights(shared_pth, out)
        return WeightsChoice(out, True, f"real VGG-16 weights converted from {shared_pth}")
    path = weights_dir / "random-vgg19.h5"
    if not path.is_file():
        write_random_vgg19(path)
    return WeightsChoice(
        path,
        False,
        "NO real weights found (run `minist weights fetch vgg19`): using RANDOM weights, so the "
        "features, reconstructions and stylised images below show noise patterns, not what a "
        "trained network sees",
    )


def write_random_vgg19(path: Path, seed: int = 0) -> Path:
    """A full-size VGG-19 with He-initialised random weights (for running without real ones)."""
    from minist.bench import synthetic_weights
    from minist.weights.store import save_weights

    w = synthetic_weights("vgg19", seed=seed, layers=["pool5"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_weights(path, "vgg19", w.params, w.preprocessing, "random (lesson_utils)", "none")


def _shared_image(name: str) -> Path | None:
    path = SHARED / "data" / "images" / name
    return path if path.is_file() else None


def content_image_path(default: str = "tubingen.jpg") -> Path:
    """``MINIST_CONTENT``, else ``../shared/data/images/<default>``, else a drawn photo."""
    if os.environ.get("MINIST_CONTENT"):
        return Path(os.environ["MINIST_CONTENT"])
    return _shared_image(default) or _drawn("content.png", drawn_content)


def style_image_path(default: str = "starry_night.jpg") -> Path:
    """``MINIST_STYLE``, else ``../shared/data/images/<default>``, else a drawn painting."""
    if os.environ.get("MINIST_STYLE"):
        return Path(os.environ["MINIST_STYLE"])
    return _shared_image(default) or _drawn("style.png", drawn_style)


def _drawn(name: str, draw) -> Path:
    from minist.images import save_image

    path = FIGURES / "drawn" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(path, draw())
    return path


def drawn_content(size: int = 256) -> np.ndarray:
    """A simple scene (sky, sun, hills, a house) drawn by minist: (1, 3, H, W) in [0, 1]."""
    h, w = size * 3 // 4, size
    y, x = np.mgrid[0:h, 0:w] / size
    img = np.empty((3, h, w), np.float32)
    sky = np.stack([0.35 + 0.3 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y])
    img[:] = sky
    sun = (x - 0.8) ** 2 + (y - 0.15) ** 2 < 0.07**2
    img[:, sun] = np.array([1.0, 0.85, 0.3])[:, None]
    hill = y > 0.5 + 0.08 * np.sin(6 * x)
    img[:, hill] = (np.array([0.2, 0.55, 0.2])[:, None] * (1 - 0.4 * y[hill]))
    house = (abs(x - 0.35) < 0.12) & (y > 0.38) & (y < 0.62)
    img[:, house] = np.array([0.85, 0.75, 0.6])[:, None]
    roof = (y <= 0.38) & (y > 0.26) & (abs(x - 0.35) < 0.14 - (0.38 - y))
    img[:, roof] = np.array([0.7, 0.15, 0.1])[:, None]
    window = (abs(x - 0.3) < 0.03) & (abs(y - 0.47) < 0.04)
    img[:, window] = 0.15
    return np.clip(img, 0, 1)[None]


def drawn_style(size: int = 256, seed: int = 0) -> np.ndarray:
    """A "painting" of swirling coloured brush strokes drawn by minist: (1, 3, S, S) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    field = np.zeros((size, size))
    for _ in range(6):
        cx, cy, k = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(8, 20)
        r = np.hypot(x - cx, y - cy)
        field += np.sin(k * r + 3 * np.arctan2(y - cy, x - cx))
    stripes = 0.5 + 0.5 * np.sin(25 * field / 6)
    palette = np.array([[0.1, 0.2, 0.5], [0.2, 0.4, 0.8], [0.95, 0.85, 0.3]])
    t = stripes[..., None]
    img = (1 - t) * palette[0] + t * np.where(t > 0.7, palette[2], palette[1])
    return np.clip(img.transpose(2, 0, 1), 0, 1).astype(np.float32)[None]


def to_hwc(image) -> np.ndarray:
    """(1, 3, H, W) -> (H, W, 3) NumPy, for matplotlib's imshow."""
    from minist.backend import to_numpy

    return np.clip(to_numpy(image)[0].transpose(1, 2, 0), 0, 1)


def say(*lines: str) -> None:
    """Print a block of lesson text (kept visible when a lesson runs as a script)."""
    print("\n".join(lines), file=sys.stdout, flush=True)


def in_notebook() -> bool:
    """True inside Jupyter/IPython kernels (figures are shown inline there)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def pyplot():
    """matplotlib.pyplot, with a file-only backend when the lesson runs as a script; without
    matplotlib, one line saying what to install (exit status 2)."""
    try:
        import matplotlib
    except ImportError:
        print("the lessons draw their figures with matplotlib, which is not installed: "
              "pip install -e '.[tutorials]'", file=sys.stderr)
        raise SystemExit(2) from None

    if not in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, lesson: str, name: str) -> Path:
    """Save ``fig`` as ``tutorials/figures/<lesson>/<name>.png``; show it in a notebook."""
    path = figure_dir(lesson) / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if in_notebook():
        pyplot().show()
    else:
        pyplot().close(fig)
    print(f"[figure] {path.relative_to(ROOT)}")
    return path


def numerical_gradient(f, x, h=1e-6):
    """Central differences of the scalar ``f()``, perturbing ``x`` (float64) one element at a time.

    ``f`` takes no arguments: it reads ``x``, which is changed in place and restored.
    ``dL/dx_k ~ (L(x + h e_k) - L(x - h e_k)) / 2h`` (lesson 01 derives it).
    """
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views: writing flat_x perturbs x
    for k in range(x.size):
        old = flat_x[k]
        flat_x[k] = old + h
        plus = f()
        flat_x[k] = old - h
        minus = f()
        flat_x[k] = old
        flat_g[k] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """max |a - b| / max(|a| + |b|): scale-free, 0 for identical arrays."""
    return float(np.abs(a - b).max() / max(np.max(np.abs(a) + np.abs(b)), 1e-300))
