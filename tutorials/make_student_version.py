"""Make the student version of the repository: the exercises' function bodies removed.

Usage (from the repository root)::

    python tutorials/make_student_version.py OUT [--only ex_relu,ex_gram] [--force]
                                             [--manifest FILE]

copies the repository's files into the folder ``OUT`` (outside the repository) and, for every
function of every exercise in ``tutorials/exercises.py`` (or only those given with ``--only``):

* replaces its docstring with the exercise's *statement* -- what the function computes, its
  shapes, dtype and device rules, the equation of its value -- and a pointer to the lesson
  section where the student derives the rest (``Exercise.statements``; without one, the
  docstring loses every paragraph that states or derives a gradient: :func:`redact`). A module
  docstring with a statement of its own (spec ``"module"``) is replaced the same way;
* replaces its *body* with::

      raise NotImplementedError(
          "Exercise ex_relu: write relu_forward (tutorials/02_relu_and_pooling.py, section 1); "
          "check it with: python tutorials/check.py ex_relu"
      )

  or, for a function the engine needs before its lesson (``Exercise.stand_ins``: ``to_device``
  and ``two_loop`` only), with a call of :func:`minist.classroom.stand_in` that raises the same
  error everywhere except inside a lesson's run, which runs the stand-in until the student
  writes the function;
* removes every other working route to the exercise (``Exercise.routes``): the loss kernels
  of ``minist.losses.kernels_numba`` / ``kernels_cupy`` call the student's function, their
  private kernels raise the exercise's error, CUDA sources of it become ``""``, and module
  docstrings that derive it keep their first paragraph; the docstrings of another algorithm the
  engine keeps for the same quantity (``Exercise.alternatives``) lose what states a gradient;
* in the Markdown files (``README.md``, ``tutorials/README.md``), replaces each span marked
  ``<!-- answer: ex_... -->...<!-- /answer -->`` of a handed-out exercise (a gradient in the
  equation tables) with a pointer to the lesson section that derives it (:func:`redact_markdown`);
* stores the teacher's values on seeded inputs for the checks that compare with a routed
  kernel, of every exercise (``tests/exercises/stored/<marker>.npz``, from
  ``tests/exercises/stored.py``), so that an exercise not handed out checks there too.

The signature and decorators stay; the lessons and the exercise checks stay unchanged. Which
files: all but the teacher's own tests and their data (:func:`teacher_only`), of those git
tracks (``git ls-files --cached``: an untracked file is not copied, and the script names it);
outside a git checkout, every file except ``.git``, virtual environments, caches, lesson
figures and weight files. Never the teacher's grading files, tracked or not
(:func:`grading_material`): a folder with a ``grades.csv`` (a report of ``grade.py``), a
student's copy, a folder of submissions, ``*.manifest.json`` and ``roster.csv``. The copy is
built in a temporary folder beside ``OUT`` and renamed into place at the end, so ``OUT`` is never
left half-written; a non-empty ``OUT`` is replaced only with ``--force``.

**The teacher's manifest.** Beside the copy, never inside it, the script writes
``OUT.manifest.json`` (``--manifest FILE`` puts it elsewhere): which exercises the copy was handed
out with, and from which commit of this repository (:func:`write_manifest`). ``grade.py
--manifest`` grades each submission on exactly those exercises. Keep it with your grading
files and do not hand it out: the copy's own ``tutorials/STUDENT_VERSION.txt`` says the same
for the student, but a student can edit that file.

How: :mod:`ast` gives each function's exact line span; the functions are rewritten from the
bottom of each file up, so the line numbers of the spans still to do stay valid.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
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
ROSTER = "roster.csv"  # grade.py --roster's file, as the README names it: never copied


def teacher_only(rel: Path) -> bool:
    """The teacher's own tests (``tests/test_*.py``) and their data: never in a student version.

    They compare minist with reference implementations written out in the test (a Gram as an
    ``einsum``, a loss gradient by hand): answers to the exercises. The copy keeps the exercise
    checks (``tests/exercises/``) and the helpers they import.
    """
    parts = rel.parts
    return len(parts) >= 2 and parts[0] == "tests" and (
        parts[1] == "data" or (len(parts) == 2 and parts[1].startswith("test_")
                               and parts[1].endswith(".py")))


class Stripped(NamedTuple):
    """One function whose body was replaced."""

    marker: str
    path: str  # relative to the repository root, e.g. "minist/layers/relu.py"
    qualname: str
    first: int  # the removed body's lines, 1-based, inclusive (in the original file)
    last: int


# ------------------------------------------------------------------------------ which files


def repository_files(root: Path = ROOT) -> list[Path]:
    """The files to copy, relative to ``root``: those git tracks when ``root`` is a checkout
    (else :func:`_walk_files`), never the teacher's grading files (:func:`grading_material`)."""
    listed = _git_files(root)
    files = listed if listed is not None else _walk_files(root)
    return without_grading([p for p in files if (root / p).is_file() or (root / p).is_symlink()])


def without_grading(files: Sequence[Path]) -> list[Path]:
    """``files`` less the teacher's grading files: what :func:`grading_material` finds, the
    manifests and the roster."""
    folders = grading_material(files)
    return sorted(p for p in files if not any(p.is_relative_to(f) for f in folders)
                  and not p.name.endswith(MANIFEST_SUFFIX) and p.name != ROSTER)


def grading_material(files: Sequence[Path]) -> set[Path]:
    """The folders among ``files`` that hold the teacher's grading, never handed out: a report of
    ``grade.py`` (a folder with a ``grades.csv``), a student's copy (a folder below the root with
    a ``tutorials/STUDENT_VERSION.txt``) and a folder of submissions (two or more sub-folders
    with a ``minist/`` folder in them, up to two levels down, where ``grade.py`` finds a copy)
    -- as ``grade.py submissions/ -o report/`` leaves them."""
    found: set[Path] = set()
    with_minist: dict[Path, set[str]] = {}
    for p in files:
        parts = p.parts
        if p.name == "grades.csv":
            found.add(p.parent)
        if len(parts) > 2 and parts[-2:] == STUDENT_MARKER.parts:
            found.add(Path(*parts[:-2]))
        for k in range(2, len(parts) - 1):
            if parts[k] == "minist":  # a copy in parts[:k]: in each folder up to three above
                for j in range(max(1, k - 3), k):  # it, the sub-folder it came in
                    with_minist.setdefault(Path(*parts[:j]), set()).add(parts[j])
    found |= {folder for folder, copies in with_minist.items() if len(copies) >= 2}
    return {f for f in found if f != Path(".")}


def _git_ls(root: Path, *options: str) -> list[Path] | None:
    """``git ls-files OPTIONS`` of the checkout whose top is ``root`` (paths relative to it), or
    ``None`` when ``root`` is not the top of a checkout (a folder inside another one, or none)."""
    git = ["git", "-C", str(root)]
    try:
        top = subprocess.run(git + ["rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() != root.resolve():
            return None  # root is a folder inside some other checkout: walk it instead
        out = subprocess.run(git + ["ls-files", "-z", *options], capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [Path(name) for name in dict.fromkeys(out.decode().split("\0")) if name]


def _git_files(root: Path) -> list[Path] | None:
    """The files git tracks, or ``None`` when ``root`` is not a checkout."""
    return _git_ls(root, "--cached")


def untracked_files(root: Path = ROOT) -> list[Path]:
    """Files git neither tracks nor ignores: not copied (the teacher may have forgotten them);
    none outside a checkout."""
    return _git_ls(root, "--others", "--exclude-standard") or []


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


def _docstring(node) -> ast.Expr | None:
    """The docstring statement of a module, class or function, or ``None``."""
    first = node.body[0] if node.body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first
    return None


def body_span(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int, int]:
    """``(first, last, indent)``: the lines to rewrite, docstring included (1-based, inclusive).

    The span starts at the docstring (or the first statement) and ends on the function's last
    line, so comments between the statements go too (they may hold the solution).
    """
    doc = _docstring(node)
    if doc is not None and len(node.body) == 1:
        raise LookupError(f"{node.name}: has only a docstring, nothing to strip")
    first = node.body[0].lineno
    code = node.body[1] if doc is not None else node.body[0]
    if first <= node.lineno or code.lineno == node.lineno:
        raise LookupError(f"{node.name}: body on the same line as 'def'; cannot strip it")
    return first, node.end_lineno, code.col_offset


# Paragraphs that state or derive a gradient: they go from a docstring without a statement.
_GRADIENT = re.compile(
    r"\\partial|\\mathrel\{\+\}=|\\frac\{d|[Gg]radient|[Kk]ey step|[Dd]erivation|[Cc]hain rule"
    r"|(?<![A-Za-z\\])d(?:x|w|b|y|F|E|G|L|\\tilde)"
)


def redact(doc: str) -> str:
    """``doc`` without the paragraphs (and ``.. math::`` blocks) that state or derive a gradient.

    The fallback for an exercise function without a registered statement: what remains is the
    statement of the value, shapes and rules, as far as the docstring keeps them apart.
    """
    paragraphs = re.split(r"\n\s*\n", textwrap.dedent(_strip_first_line_indent(doc)).strip())
    kept, skip_block = [], False
    for paragraph in paragraphs:
        if paragraph.lstrip().startswith(".. math::"):
            skip_block = False
            kept.append(paragraph)
            continue
        if paragraph.startswith((" ", "\t")) and kept and kept[-1].lstrip().startswith(".. math::"):
            if _GRADIENT.search(paragraph):  # the block's equations: drop the heading too
                kept.pop()
                skip_block = True
            else:
                kept.append(paragraph)
            continue
        if skip_block and paragraph.startswith((" ", "\t")):
            continue
        skip_block = False
        if not _GRADIENT.search(paragraph):
            kept.append(paragraph)
    if kept and kept[-1].lstrip().startswith(".. math::"):
        kept.pop()
    return "\n\n".join(kept)


def _strip_first_line_indent(doc: str) -> str:
    """A docstring's first line has no indent of its own; give it the others' for dedent."""
    lines = doc.splitlines()
    rest = [line for line in lines[1:] if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in rest), default=0)
    return "\n".join([" " * indent + lines[0].strip()] + lines[1:]) if lines else doc


def stub_message(ex: Exercise, qualname: str) -> str:
    """``"Exercise ex_gram: write gram_matrix (tutorials/05_...py, section 1); check it ..."``."""
    number = ex.section.split(".", 1)[0] if ex.section else ""
    where = f"{ex.lesson_file}, section {number}" if number.isdigit() else ex.lesson_file
    return (f"Exercise {ex.marker}: write {qualname} ({where}); "
            f"check it with: python tutorials/check.py {ex.marker}")


def pointer(ex: Exercise, width: int = 96) -> str:
    """The paragraph that ends every student docstring: where to derive, how to check.

    Wrapped to ``width`` columns without breaking a ````literal```` or the quoted section name.
    """
    text = (f"Exercise {ex.marker}: derive what is not stated here in {ex.where}; write the "
            f"body, then check it with ``python tutorials/check.py {ex.marker}``.")
    glue = "\x00"  # a space that must not break a line
    text = re.sub(r'``[^`]*``|"[^"]*"', lambda m: m.group().replace(" ", glue), text)
    return "\n".join(line.replace(glue, " ") for line in textwrap.wrap(
        text, width, break_on_hyphens=False, break_long_words=False))


def student_docstring(ex: Exercise, spec: str, original: str | None, width: int = 96) -> str:
    """The statement of ``spec`` for the student version, ending with :func:`pointer`."""
    text = ex.statements.get(spec)
    text = textwrap.dedent(text).strip() if text is not None else redact(original or "")
    end = pointer(ex, width)
    return f"{text}\n\n{end}" if text else end


def docstring_lines(text: str, indent: int, newline: str = "\n") -> list[str]:
    """``text`` as a raw triple-quoted docstring whose lines start at column ``indent``."""
    if '"""' in text:
        raise MinistError(f"statement contains a triple quote: {text[:60]!r}")
    pad = " " * indent
    out = [pad + line if line.strip() else "" for line in text.splitlines()]
    out[0] = f'{pad}r"""{out[0][indent:]}'
    out.append(f'{pad}"""')
    return [line + newline for line in out]


def call_arguments(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The arguments that pass ``node``'s own parameters on unchanged: ``"x, w, b, stride"``."""
    a = node.args
    parts = [p.arg for p in a.posonlyargs + a.args]
    if a.vararg:
        parts.append(f"*{a.vararg.arg}")
    parts += [f"{p.arg}={p.arg}" for p in a.kwonlyargs]
    if a.kwarg:
        parts.append(f"**{a.kwarg.arg}")
    return ", ".join(parts)


def stub(ex: Exercise, qualname: str, indent: int, newline: str = "\n",
         stand_in: str | None = None, arguments: str = "") -> list[str]:
    """The replacement body: raise ``NotImplementedError`` naming the exercise (or, with
    ``stand_in``, let the lessons run that function in its place)."""
    pad = " " * indent
    pieces = textwrap.wrap(stub_message(ex, qualname), 100 - indent - 7, drop_whitespace=False,
                           break_on_hyphens=False, break_long_words=False)
    quoted = [f'{pad}    "{piece}"{newline}' for piece in pieces]
    if stand_in is None:
        return [f"{pad}raise NotImplementedError({newline}", *quoted, f"{pad}){newline}"]
    return [
        f"{pad}# Replace these lines with your code. Until you do, the lessons run minist's"
        f"{newline}",
        f"{pad}# stand-in {stand_in} instead; the checks never do.{newline}",
        f"{pad}from minist.classroom import stand_in{newline}{newline}",
        f"{pad}return stand_in({newline}",
        *quoted[:-1],
        quoted[-1].rstrip("\r\n").rstrip() + f",{newline}",
        f'{pad}    "{stand_in}",{newline}',
        f"{pad})({arguments}){newline}",
    ]


def strip_source(source: str, targets: Iterable[tuple[Exercise, str]], path: str = "<source>",
                 module: str | None = None):
    """Return ``(new_source, [(qualname, first, last), ...])`` with those functions rewritten.

    ``targets`` are ``(exercise, qualname)`` pairs for functions of this one file, ``module``
    its dotted name (to look up statements and stand-ins; default: none registered).
    """
    tree = ast.parse(source, filename=path)
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    spans = []
    module_statement = None
    for ex, qualname in targets:
        try:
            node = find_function(tree, qualname)
            first, last, indent = body_span(node)
        except LookupError as err:
            raise MinistError(f"{path}: {err} (exercise {ex.marker})") from None
        spec = f"{module}:{qualname}"
        doc = _docstring(node)
        docstring = student_docstring(ex, spec, doc.value.value if doc else None,
                                      width=100 - indent)
        spans.append((first, last, indent, ex, qualname, node, docstring, ex.stand_ins.get(spec)))
        if module is not None and module in ex.statements:
            module_statement = ex.statements[module]
    spans.sort(key=lambda s: s[0], reverse=True)  # bottom-up: earlier spans keep their lines
    for span, below in zip(spans, [None] + spans[:-1], strict=True):
        first, last, indent, ex, qualname, node, docstring, stand_in = span
        if below is not None and last >= below[0]:
            raise MinistError(f"{path}: {qualname} overlaps {below[4]}")
        lines[first - 1 : last] = docstring_lines(docstring, indent, newline) + stub(
            ex, qualname, indent, newline, stand_in, call_arguments(node))
    module_doc = _docstring(tree)
    if module_statement is not None and module_doc is not None:
        text = textwrap.dedent(module_statement).strip()
        lines[module_doc.lineno - 1 : module_doc.end_lineno] = docstring_lines(text, 0, newline)
    new_source = "".join(lines)
    compile(new_source, path, "exec")  # the student version must still import
    done = [(s[4], s[0], s[1]) for s in reversed(spans)]
    return new_source, done


# ------------------------------------------ routes and alternatives (other code, same quantity)


def _module_file(module: str, root: Path) -> Path:
    return source_path(f"{module}:x", root)


def route_source(source: str, routes: Iterable[tuple[Exercise, str, str]], path: str = "<source>",
                 alternatives: Iterable[tuple[Exercise, str]] = ()) -> str:
    """``source`` with its routes rewritten and its alternatives' docstrings redacted.

    ``routes``: ``(exercise, name, target)`` for this file -- ``name`` a function
    (``"gram_matrix"``), a module-level constant (``"_TV"``) or ``""`` for the module's
    docstring; ``target`` the ``"module:qualname"`` a route function calls instead (the
    student's function), or ``""``: raise the exercise's ``NotImplementedError``.
    ``alternatives``: ``(exercise, qualname)`` whose docstrings lose what states a gradient.
    """
    tree = ast.parse(source, filename=path)
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    edits = []  # (first, last, new lines), 1-based inclusive, applied bottom-up
    module_doc_done = False
    for ex, name, target in routes:
        if name == "":
            doc = _docstring(tree)
            if doc is None or module_doc_done:
                continue
            module_doc_done = True
            first = textwrap.dedent(doc.value.value).strip().split("\n\n")[0]
            note = textwrap.fill(
                "In this student version the functions here that compute an exercise's quantity "
                "call the exercise's function (yours) or raise its NotImplementedError: "
                "tutorials/STUDENT_VERSION.txt lists the exercises.", 96)
            edits.append((doc.lineno, doc.end_lineno,
                          docstring_lines(f"{first}\n\n{note}", 0, newline)))
            continue
        node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign))
                     and (n.name == name if isinstance(n, ast.FunctionDef) else any(
                         isinstance(t, ast.Name) and t.id == name for t in n.targets))), None)
        if node is None:
            raise MinistError(f"{path}: no definition of {name!r} (route of {ex.marker})")
        if isinstance(node, ast.Assign):
            pad = " " * node.col_offset
            edits.append((node.lineno, node.end_lineno, [
                f"{pad}# Exercise {ex.marker}: in the student version this source is yours "
                f"to write{newline}", f'{pad}{name} = ""{newline}']))
            continue
        first = node.body[0].lineno
        indent = node.body[0].col_offset
        pad = " " * indent
        what = split(ex.functions[0])[1]
        if target:
            module, qualname = split(target)
            doc = (f"In the student version: calls your ``{qualname}`` (exercise {ex.marker}).")
            body = [f"{pad}from {module} import {qualname} as _yours{newline}{newline}",
                    f"{pad}return _yours({call_arguments(node)}){newline}"]
        else:
            doc = f"In the student version: part of exercise {ex.marker} ({what})."
            body = stub(ex, what, indent, newline)
        edits.append((first, node.end_lineno, docstring_lines(doc, indent, newline) + body))
    for ex, qualname in {q: (e, q) for e, q in reversed(list(alternatives))}.values():
        node = find_function(tree, qualname)  # (one edit per function, the first exercise's)
        doc = _docstring(node)
        if doc is None:
            continue
        indent = node.body[0].col_offset
        text = redact(doc.value.value)
        note = (f"In the student version: not an exercise, another implementation that minist "
                f"keeps beside exercise {ex.marker}; a function of that exercise that calls it "
                "fails its checks.")
        text = f"{text}\n\n{textwrap.fill(note, 96 - indent)}" if text else textwrap.fill(
            note, 96 - indent)
        edits.append((doc.lineno, doc.end_lineno, docstring_lines(text, indent, newline)))
    edits.sort(key=lambda e: e[0], reverse=True)
    for (first, last, new), below in zip(edits, [None] + edits[:-1], strict=True):
        if below is not None and last >= below[0]:
            raise MinistError(f"{path}: overlapping rewrites at line {below[0]}")
        lines[first - 1 : last] = new
    new_source = "".join(lines)
    compile(new_source, path, "exec")
    return new_source


def route_tree(root: Path, exercises: Sequence[Exercise]) -> list[str]:
    """Rewrite, in the copy at ``root``, the exercises' routes and alternatives; return the
    ``"path: name"`` of each rewritten route."""
    by_file: dict[Path, tuple[list, list]] = {}
    written = {spec for ex in exercises for spec in ex.functions}  # stated by strip_tree
    for ex in exercises:
        for spec, target in ex.routes.items():
            module, _, name = spec.partition(":")
            by_file.setdefault(_module_file(module, root), ([], []))[0].append((ex, name, target))
        for spec in ex.alternatives:
            if spec in written:  # another exercise's function, handed out too: its statement
                continue
            module, qualname = split(spec)
            by_file.setdefault(_module_file(module, root), ([], []))[1].append((ex, qualname))
    done = []
    for path, (routes, alternatives) in by_file.items():
        rel = path.relative_to(root).as_posix()
        with open(path, encoding="utf-8", newline="") as f:
            source = f.read()
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(route_source(source, routes, rel, alternatives))
        done += [f"{rel}: {name or '(module docstring)'}" for _, name, _ in routes]
    return done


# A span of a Markdown file (README.md, tutorials/README.md) that states an exercise's answer --
# a gradient, a formula that is the code: ``<!-- answer: ex_style_loss -->`...`<!-- /answer -->``.
# In a student version that hands out one of the exercises named, it becomes a pointer to the
# lesson section that derives it; elsewhere it stays (the comments show nowhere).
ANSWER_SPAN = re.compile(r"<!--\s*answer:\s*([\w\s,]*?)\s*-->(.*?)<!--\s*/answer\s*-->", re.S)


def redact_markdown(text: str, exercises: Sequence[Exercise], path: str = "<markdown>") -> str:
    """``text`` with each :data:`ANSWER_SPAN` of a handed-out exercise replaced by a pointer."""
    handed = {ex.marker: ex for ex in exercises}

    def replace(match: re.Match) -> str:
        markers = [m.strip() for m in match.group(1).split(",") if m.strip()]
        for marker in markers or [""]:
            try:
                get(marker)
            except KeyError as err:
                raise MinistError(f"{path}: answer span names {err.args[0]}") from None
        ex = next((handed[m] for m in markers if m in handed), None)
        if ex is None:
            return match.group(0)
        number = ex.section.split(".", 1)[0] if ex.section else ""
        where = f"`{ex.lesson_file}`" + (f", section {number}" if number.isdigit() else "")
        return f"(derive it in {where}: exercise `{ex.marker}`)"

    return ANSWER_SPAN.sub(replace, text)


def redact_markdown_tree(root: Path, exercises: Sequence[Exercise]) -> list[str]:
    """Apply :func:`redact_markdown` to every Markdown file of the copy at ``root``; return the
    files it changed."""
    changed = []
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        new = redact_markdown(text, exercises, path.relative_to(root).as_posix())
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path.relative_to(root).as_posix())
    return changed


def write_stored_values(root: Path, exercises: Sequence[Exercise],
                        source: Path = ROOT) -> list[Path]:
    """The teacher's values on seeded inputs, for the copy's checks (``tests/exercises/stored``),
    computed here by ``source``'s ``tests/exercises/stored.py``."""
    stored_py = source / "tests" / "exercises" / "stored.py"
    if not stored_py.is_file():
        return []
    spec = importlib.util.spec_from_file_location("_minist_stored_values", stored_py)
    stored = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stored)
    return [stored.write(root, ex.marker) for ex in exercises if ex.marker in stored.CASES]


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
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        new_source, done = strip_source(source, targets, rel, module)
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
                         root: Path = ROOT, quiet: bool = False,
                         manifest: Path | None = None) -> list[Stripped]:
    """Write the student version of ``root`` into ``out``; return what was stripped.

    ``only``: exercise markers to strip (default: all, in lesson order). ``manifest``: where
    the teacher's manifest goes (default: :func:`manifest_path` ``(out)``, beside the copy).
    """
    root = Path(root).resolve()
    out = Path(out).resolve()
    exercises = list(EXERCISES) if not only else [_known(m) for m in only]
    _check_out(out, root, force)
    manifest = manifest_path(out) if manifest is None else Path(manifest).resolve()
    _check_manifest_path(manifest, out, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = [rel for rel in repository_files(root) if not teacher_only(rel)]
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        for rel in files:
            target = build / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, target, follow_symlinks=False)
        stripped = strip_tree(build, exercises)
        route_tree(build, exercises)
        redact_markdown_tree(build, exercises)
        write_stored_values(build, EXERCISES, root)  # every exercise's: checks all run here
        (build / STUDENT_MARKER).parent.mkdir(parents=True, exist_ok=True)
        (build / STUDENT_MARKER).write_text(_marker_text(exercises), encoding="utf-8")
        _move_into_place(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    write_manifest(manifest, out, exercises, root)
    if not quiet:
        for s in stripped:
            print(f"stripped {s.marker:<18} {s.path}:{s.first}-{s.last}  {s.qualname}")
        left = [p for p in without_grading(untracked_files(root)) if not teacher_only(p)]
        if left:
            shown = ", ".join(p.as_posix() for p in left[:5]) + (", ..." if len(left) > 5 else "")
            print(f"not copied, not tracked by git ({len(left)} files; git add what belongs in "
                  f"the copy): {shown}")
        print(f"student version written to {out} ({len(files)} files, "
              f"{len(stripped)} function{'s' * (len(stripped) != 1)} in {len(exercises)} "
              f"exercise{'s' * (len(exercises) != 1)} stripped)")
        print(f"the teacher's manifest (keep it, do not hand it out; grade.py --manifest reads "
              f"it): {manifest}")
    return stripped


# --------------------------------------------------------------- the teacher's manifest

MANIFEST_FORMAT = "minist-handout-manifest"
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(out: Path) -> Path:
    """Where the manifest of the copy ``out`` goes by default: ``OUT.manifest.json``, beside it."""
    out = Path(out)
    return out.with_name(out.name + MANIFEST_SUFFIX)


def _check_manifest_path(manifest: Path, out: Path, root: Path) -> None:
    if manifest.is_relative_to(out):
        raise MinistError(f"--manifest {manifest}: is inside the copy, where the student could "
                          "edit it; put it beside the copy or in a folder of your own")
    if manifest.is_relative_to(root):
        raise MinistError(f"--manifest {manifest}: is inside the repository (the next copy "
                          "would hand it out); put it outside")
    if manifest.is_dir():
        raise MinistError(f"--manifest {manifest}: is a folder; give a file name")


def manifest_record(out: Path, exercises: Sequence[Exercise], root: Path = ROOT) -> dict:
    """What a manifest says: the handout's name, its exercises and functions, when and from what.

    ``handout`` is the copy's folder name; ``grade.py`` matches a submission to the manifest
    whose handout is the submission's folder name (or its roster ``handout``), and uses a
    lone manifest for every submission.
    """
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "handout": Path(out).name,
        "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(root),
        "exercises": [ex.marker for ex in exercises],
        "functions": {ex.marker: list(ex.functions) for ex in exercises},
    }


def write_manifest(path: Path, out: Path, exercises: Sequence[Exercise], root: Path = ROOT) -> None:
    """Write the teacher's manifest of the copy ``out`` to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(manifest_record(out, exercises, root), indent=1) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _git_commit(root: Path) -> str:
    """The commit ``root`` is checked out at, ``+`` if it has changes; "" outside git."""
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+" if dirty else "")


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
    marker_width = max(len(ex.marker) for ex in exercises)  # columns line up for any marker
    lesson_width = max(len(ex.lesson_file) for ex in exercises)
    for ex in exercises:
        names = ", ".join(split(spec)[1] for spec in ex.functions)
        lines.append(f"{ex.marker:<{marker_width}}  {ex.lesson_file:<{lesson_width}}  {names}")
    lines += ["", "Check one with: python tutorials/check.py <exercise>",
              "(or: python -m pytest -m <exercise>)", ""]
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
    parser.add_argument("--manifest", type=Path, default=None,
                        help="where to write the teacher's manifest of what the copy hands out "
                             "(default: OUT.manifest.json, beside OUT); grade.py --manifest "
                             "reads it")
    args = parser.parse_args(argv)
    only = [m for m in args.only.split(",") if m.strip()]
    try:
        make_student_version(args.out, only, args.force, manifest=args.manifest)
    except MinistError as err:
        print(f"make_student_version: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
