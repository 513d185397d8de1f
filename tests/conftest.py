"""Shared fixtures: tiny random VGG weight files, the real data in ../shared, the GPU marker;
the exercise checks' failures in words (``diagnose.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from diagnose import check_name, check_name_of, diagnose

import minist

CHECKOUT = Path(__file__).resolve().parents[1]
if Path(minist.__file__).resolve().parent != CHECKOUT / "minist":
    # e.g. plain `pytest` in a student's copy with another minist installed in the environment
    # (the venv's `pytest` script does not put the current folder on sys.path): the checks would
    # test that minist, not this copy's. pyproject's `pythonpath` prevents it; refuse otherwise.
    sys.stderr.write(
        f"tests/conftest.py: these tests would import the minist in "
        f"{Path(minist.__file__).resolve().parent}, not this copy's ({CHECKOUT / 'minist'}); "
        f"run them from {CHECKOUT} with: python -m pytest ...\n")
    raise SystemExit(4)  # pytest's "usage error"; not pytest.exit, which it would wrap here

from other_implementations import no_other_implementation  # noqa: E402, F401 (autouse fixture)

from minist.architectures import conv_shapes  # noqa: E402
from minist.backend import gpu_available  # noqa: E402
from minist.preprocessing import CAFFE, TORCHVISION  # noqa: E402
from minist.weights.store import save_weights  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_CHANNELS = (4, 4, 6, 6, 8)


def random_params(arch, block_channels=TINY_CHANNELS, seed=0, dtype=np.float32, layers=None):
    """He-initialised random VGG weights (so activations keep their scale through the layers)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, (w_shape, b_shape) in conv_shapes(arch, block_channels).items():
        if layers is not None and name not in layers:
            break
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        w = rng.standard_normal(w_shape) * np.sqrt(2.0 / fan_in)
        b = rng.standard_normal(b_shape) * 0.1
        params[name] = (w.astype(dtype), b.astype(dtype))
    return params


def write_random_vgg(path, arch="vgg16", block_channels=TINY_CHANNELS, prep=TORCHVISION, seed=0):
    params = random_params(arch, block_channels, seed)
    save_weights(
        path,
        arch,
        params,
        prep,
        source="random (tests)",
        license="none",
        block_channels=block_channels,
    )
    return path


@pytest.fixture(scope="session")
def tiny_vgg_files(tmp_path_factory):
    """{(arch, "torchvision"|"caffe"): path} of tiny random VGG HDF5 files in minist's layout."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for arch in ("vgg16", "vgg19"):
        for style, prep in (("torchvision", TORCHVISION), ("caffe", CAFFE)):
            files[arch, style] = write_random_vgg(folder / f"{arch}-{style}.h5", arch, prep=prep)
    return files


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared (real weights and images) is not present")
    return SHARED


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_vgg16_file(shared_dir, tmp_path_factory):
    """The real ImageNet VGG-16 from ../shared, converted once into minist's layout."""
    from minist.weights.convert import convert_weights

    out = tmp_path_factory.mktemp("real-weights") / "vgg16.h5"
    return convert_weights(shared_dir / "weights" / "vgg16-features.pth", out)


# ------------------------------------------------------------- exercise checks, in words

DIAGNOSIS = "diagnosis"  # the user property of a failed exercise check's report


def _is_exercise_check(item) -> bool:
    return any(mark.name.startswith("ex_") for mark in item.iter_markers())


CHECK = "check"  # the user property of an exercise check's report: its name in words


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep one line in words (``diagnose.diagnose``) on each failed exercise check's report,
    and the check's name in words on each of its reports."""
    outcome = yield
    report = outcome.get_result()
    if _is_exercise_check(item) and not any(k == CHECK for k, _ in report.user_properties):
        report.user_properties.append((CHECK, check_name_of(item)))
    if report.failed and call.excinfo is not None and _is_exercise_check(item):
        try:
            words = diagnose(call.excinfo.value, call.excinfo.tb)
        except Exception as err:  # a diagnosis must never hide the failure itself
            words = f"{type(call.excinfo.value).__name__} (no diagnosis: {err})"
        if report.when != "call":
            words = f"could not run the check ({report.when}): {words}"
        report.user_properties.append((DIAGNOSIS, words))


def diagnosis_of(report) -> str | None:
    """The line in words kept on a failed exercise check's report, or ``None``."""
    return next((v for k, v in getattr(report, "user_properties", ()) if k == DIAGNOSIS), None)


def pytest_terminal_summary(terminalreporter):
    lines = []
    for report in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error",
                                                                                         []):
        words = diagnosis_of(report)
        if words is not None:
            module = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            exercise = module.removeprefix("test_").removesuffix(".py")
            name = next((v for k, v in report.user_properties if k == CHECK),
                        check_name(report.nodeid.rsplit("::", 1)[-1]))
            lines.append(f"FAIL {exercise}: {name}: {words}")
    if lines:
        terminalreporter.section("exercise checks in words", sep="-")
        for line in dict.fromkeys(lines):
            terminalreporter.write_line(line)
