"""Make the student version of the repository: the exercises' function bodies removed.

Usage (from the repository root)::

    python tutorials/make_student_version.py OUT [--only ex_relu,ex_gram] [--force]

copies the repository's files into the folder ``OUT`` (outside the repository) and, for every
function of every exercise in ``tutorials/exercises.py`` (or only those given with ``--only``),
replaces the function's *body* with::

    raise NotImplementedError(
        "Exercise ex_relu: implement relu_forward (tutorials/02_relu_and_pooling.py); "
        "check with: pytest -m ex_relu"
    )

The signature, decorators and docstring stay, so the student still reads the equations; the
lessons and the exercise checks stay unchanged. Which files: those git tracks plus untracked
files it does not ignore (``git ls-files --cached --others --exclude-standard``); outside a git
checkout, every file except ``.git``, virtual environments, caches, lesson figures and weight
files. The copy is built in a temporary folder beside ``OUT`` and renamed into place at the end,
so ``OUT`` is never left half-written; a non-empty ``OUT`` is replaced only with ``--force``.

How: :mod:`ast` gives each function's exact line span; the bodies are rewritten from the bottom
of each file up, so the line numbers of the spans still to do stay valid.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # run as a script, or loaded by path from the tests
    sys.path.insert(0, str(HERE))
try:
    from minist.errors import MinistError
except ImportError:  # not installed: use the package next to this script
    sys.path.insert(0, str(ROOT))
    from minist.errors import MinistError

from exercises import EXERCISES, Exercise, get, source_path, split  # noqa: E402

# Written into the student version; its presence tells the teacher-only tests where they are.
STUDENT_MARKER = Path("tutorials") / "STUDENT_VERSION.txt"

# Outside a git checkout: folders and files never copied.
SKIP_DIRS = {
    ".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
    "build", "dist", ".device", ".ipynb_checkpoints",
}
SKIP_PATHS = {Path("tutorials") / "figures"}
SKIP_SUFFIXES = {".pyc", ".h5", ".pth", ".part"}


class Stripped(NamedTuple):
    """One function whose body was replaced."""

    marker: str
    path: str  # relative to the repository root, e.g. "minist/layers/relu.py"
    qualname: str
    first: int  # the removed body's lines, 1-based, inclusive (in the original file)
    last: int


# ------------------------------------------------------------------------------ which files


def repository_files(root: Path = ROOT) -> list[Path]:
    """The files to copy, relative to ``root``: git's view when ``root`` is a checkout."""
    listed = _git_files(root)
    files = listed if listed is not None else _walk_files(root)
    return sorted(p for p in files if (root / p).is_file() or (root / p).is_symlink())


def _git_files(root: Path) -> list[Path] | None:
    """Tracked + untracked-but-not-ignored files, or ``None`` when ``root`` is not a checkout."""
    git = ["git", "-C", str(root)]
    try:
        top = subprocess.run(git + ["rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() != root.resolve():
            return None  # root is a folder inside some other checkout: walk it instead
        out = subprocess.run(git + ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [Path(name) for name in dict.fromkeys(out.decode().split("\0")) if name]


def _walk_files(root: Path) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        dirs[:] = [
            d for d in dirs
            if d not in SKIP_DIRS and not d.endswith(".egg-info")
            and rel_folder / d not in SKIP_PATHS
        ]
        files += [rel_folder / n for n in names if Path(n).suffix not in SKIP_SUFFIXES]
    return files


# ------------------------------------------------------------------------- stripping bodies


def find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The ``def`` called ``qualname`` ("f" or "Class.method") at module or class level."""
    scope: Sequence[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next(
            (n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.ClassDef)) and n.name == part),
            None,
        )
        if node is None:
            raise LookupError(f"{qualname}: no definition of {part!r}")
        scope = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise LookupError(f"{qualname}: is a class, not a function")
    return node


def body_span(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int, int]:
    """``(first, last, indent)``: the body's lines after the docstring (1-based, inclusive).

    The span starts on the line after the docstring, so comments between the docstring and the
    first statement go too (they may hold the solution); it ends on the function's last line.
    """
    body = node.body
    has_doc = (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )
    if has_doc and len(body) == 1:
        raise LookupError(f"{node.name}: has only a docstring, nothing to strip")
    first = body[0].end_lineno + 1 if has_doc else body[0].lineno
    code = body[1] if has_doc else body[0]
    if first <= node.lineno or code.lineno == node.lineno:
        raise LookupError(f"{node.name}: body on the same line as 'def'; cannot strip it")
    return first, node.end_lineno, code.col_offset


def stub(ex: Exercise, qualname: str, indent: int, newline: str = "\n") -> list[str]:
    """The replacement body: one ``raise NotImplementedError`` naming the exercise."""
    pad = " " * indent
    return [
        f"{pad}raise NotImplementedError({newline}",
        f'{pad}    "Exercise {ex.marker}: implement {qualname} ({ex.lesson_file}); "{newline}',
        f'{pad}    "check with: pytest -m {ex.marker}"{newline}',
        f"{pad}){newline}",
    ]


def strip_source(source: str, targets: Iterable[tuple[Exercise, str]], path: str = "<source>"):
    """Return ``(new_source, [(qualname, first, last), ...])`` with those bodies replaced.

    ``targets`` are ``(exercise, qualname)`` pairs for functions of this one file.
    """
    tree = ast.parse(source, filename=path)
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    spans = []
    for ex, qualname in targets:
        try:
            first, last, indent = body_span(find_function(tree, qualname))
        except LookupError as err:
            raise MinistError(f"{path}: {err} (exercise {ex.marker})") from None
        spans.append((first, last, indent, ex, qualname))
    spans.sort(key=lambda s: s[0], reverse=True)  # bottom-up: earlier spans keep their lines
    for (first, last, indent, ex, qualname), below in zip(spans, [None] + spans[:-1],
                                                          strict=True):
        if below is not None and last >= below[0]:
            raise MinistError(f"{path}: {qualname} overlaps {below[4]}")
        lines[first - 1 : last] = stub(ex, qualname, indent, newline)
    new_source = "".join(lines)
    compile(new_source, path, "exec")  # the student version must still import
    done = [(q, first, last) for first, last, _, _, q in reversed(spans)]
    return new_source, done


def strip_tree(root: Path, exercises: Sequence[Exercise]) -> list[Stripped]:
    """Replace, in the copy at ``root``, the bodies of the exercises' functions."""
    by_file: dict[Path, list[tuple[Exercise, str]]] = {}
    for ex in exercises:
        for spec in ex.functions:
            _, qualname = split(spec)
            by_file.setdefault(source_path(spec, root), []).append((ex, qualname))
    stripped = []
    for path, targets in by_file.items():
        rel = path.relative_to(root).as_posix()
        if not path.is_file():
            raise MinistError(f"{rel}: not found (needed by {targets[0][0].marker})")
        with open(path, encoding="utf-8", newline="") as f:  # keep the file's line endings
            source = f.read()
        new_source, done = strip_source(source, targets, rel)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(new_source)
        markers = {q: ex.marker for ex, q in targets}
        stripped += [Stripped(markers[q], rel, q, a, b) for q, a, b in done]
    order = {ex.marker: k for k, ex in enumerate(EXERCISES)}
    return sorted(stripped, key=lambda s: (order[s.marker], s.path, s.first))


# ------------------------------------------------------------------------------- the copy


def _check_out(out: Path, root: Path, force: bool) -> None:
    if out == root or root.is_relative_to(out):
        raise MinistError(f"{out}: would replace the repository itself; choose another folder")
    if out.is_relative_to(root):
        raise MinistError(f"{out}: is inside the repository; choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise MinistError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MinistError(f"{out}: folder is not empty (use --force to replace it)")


def make_student_version(out, only: Sequence[str] | None = None, force: bool = False,
                         root: Path = ROOT, quiet: bool = False) -> list[Stripped]:
    """Write the student version of ``root`` into ``out``; return what was stripped.

    ``only``: exercise markers to strip (default: all, in lesson order).
    """
    root = Path(root).resolve()
    out = Path(out).resolve()
    exercises = list(EXERCISES) if not only else [_known(m) for m in only]
    _check_out(out, root, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = repository_files(root)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        for rel in files:
            target = build / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, target, follow_symlinks=False)
        stripped = strip_tree(build, exercises)
        (build / STUDENT_MARKER).parent.mkdir(parents=True, exist_ok=True)
        (build / STUDENT_MARKER).write_text(_marker_text(exercises), encoding="utf-8")
        _move_into_place(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if not quiet:
        for s in stripped:
            print(f"stripped {s.marker:<17} {s.path}:{s.first}-{s.last}  {s.qualname}")
        print(f"student version written to {out} ({len(files)} files, "
              f"{len(stripped)} functions in {len(exercises)} exercises stripped)")
    return stripped


def _known(marker: str) -> Exercise:
    try:
        return get(marker.strip())
    except KeyError as err:
        raise MinistError(f"--only: {err.args[0]}") from None


def _marker_text(exercises: Sequence[Exercise]) -> str:
    lines = [
        "This is the student version of minist, made by tutorials/make_student_version.py.",
        "The functions of these exercises raise NotImplementedError until you write them:",
        "",
    ]
    for ex in exercises:
        names = ", ".join(split(spec)[1] for spec in ex.functions)
        lines.append(f"{ex.marker:<17} {ex.lesson_file:<32} {names}")
    lines += ["", "Check one with: python -m pytest -m <exercise>", ""]
    return "\n".join(lines)


def _move_into_place(build: Path, out: Path) -> None:
    """Rename the finished copy onto ``out``, replacing an existing folder only at the end."""
    if not out.exists():
        os.rename(build, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(build, out)
    except BaseException:
        os.rename(old, out)  # put the old folder back
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old)


# ------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the student version of this repository (exercise bodies removed).",
        epilog="exercises: " + ", ".join(ex.marker for ex in EXERCISES),
    )
    parser.add_argument("out", type=Path, help="folder to write (outside this repository)")
    parser.add_argument("--only", default="",
                        help="comma-separated exercises to strip (default: all)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    args = parser.parse_args(argv)
    only = [m for m in args.only.split(",") if m.strip()]
    try:
        make_student_version(args.out, only, args.force)
    except MinistError as err:
        print(f"make_student_version: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
