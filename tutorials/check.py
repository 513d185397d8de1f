"""Check one exercise: ``python tutorials/check.py ex_gram`` (from any folder).

Runs the exercise's checks (``tests/exercises/test_ex_gram.py``, marker ``ex_gram``) against the
functions of *this* copy of minist, with short tracebacks, and prints one line in words per
failed check -- what was compared, on what small input, and a diagnosis where one is cheap::

    FAIL ex_gram: equals the teacher's values on seeded inputs: G vs the teacher's G, on F (3, 5)
    float64: your G is 5.000x the expected one (off by a factor of M = 5)

then a last line: how many checks pass. Exit status 0 when all pass, 1 when some fail, 2 for a
command-line error. ``--list`` lists the exercises (in a student's copy, those it hands out
marked ``*``); ``--tb long`` shows full tracebacks; anything
after ``--`` goes to pytest. The same checks run with ``python -m pytest -m ex_gram`` (the
lines in words come at the end there too), which is what CI and teachers use.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent
ROOT = TUTORIALS.parent
for path in (str(TUTORIALS), str(ROOT)):  # this copy's minist, whatever else is installed
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)

from exercises import EXERCISES, Exercise, get  # noqa: E402
from first_run import announce_compilation, report_compilation  # noqa: E402

PROFILE = "minist-check"


def use_quiet_hypothesis(database: bool = True) -> None:
    """Hypothesis without its long explanations: the failing example's exception is enough.

    ``database=False`` (the teacher's grading) also keeps no record of failing examples.
    """
    from hypothesis import Phase, Verbosity, settings

    options = {"verbosity": Verbosity.quiet, "print_blob": False,
               "phases": (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)}
    if not database:
        options |= {"database": None, "derandomize": True}
    settings.register_profile(PROFILE, **options)
    settings.load_profile(PROFILE)


def collection_error_words(text: str) -> str:
    """One line for a check file that could not be imported (e.g. a SyntaxError in minist)."""
    lines = text.splitlines()
    errors = [line[1:].strip() for line in lines
              if re.match(r"^E\s+[A-Za-z_.]*(Error|Exception|Exit)\b", line)]
    where = re.findall(r'File "([^"]+)", line (\d+)', text)
    place = ""
    if where:
        path, line = where[-1]
        rel = path.replace("\\", "/")
        rel = rel[rel.rfind("minist/"):] if "minist/" in rel else rel
        place = f" (at {rel}:{line})"
    return f"the checks could not start: {errors[-1] if errors else lines[-1:]}{place}"


class Tally:
    """A pytest plugin counting each check's outcome (setup errors count as failures); it also
    quiets Hypothesis once pytest has loaded it (:func:`use_quiet_hypothesis`)."""

    def __init__(self, database: bool = True):
        self.outcomes: dict[str, str] = {}
        self.database = database
        self.collection_errors: list[str] = []
        self.skip_reasons: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append(collection_error_words(str(report.longrepr)))

    def pytest_configure(self, config):
        use_quiet_hypothesis(self.database)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            previous = self.outcomes.get(report.nodeid)
            if previous != "failed":
                self.outcomes[report.nodeid] = report.outcome
            if report.skipped and isinstance(report.longrepr, tuple):  # (file, line, reason)
                reason = str(report.longrepr[2]).removeprefix("Skipped: ")
                if reason not in self.skip_reasons:
                    self.skip_reasons.append(reason)

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def pytest_arguments(ex: Exercise, tb: str, extra: Sequence[str] = ()) -> list[str]:
    return [str(ROOT / ex.check_file), "-m", ex.marker, "-q", f"--tb={tb}", "-rN",
            "--capture=sys", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
            "-c", str(ROOT / "pyproject.toml"), *extra]


def check(ex: Exercise, tb: str = "short", extra: Sequence[str] = ()) -> int:
    """Run ``ex``'s checks here; print the verdict; return pytest's exit status."""
    import pytest

    import minist

    print(f"{ex.marker}: {ex.summary} -- {ex.where}", flush=True)
    if Path(minist.__file__).resolve().parent != ROOT / "minist":
        print(f"warning: checking the minist in {Path(minist.__file__).parent}, not this copy's",
              flush=True)
    announce_compilation(stream=sys.__stdout__)  # not captured by pytest (--capture=sys)
    tally = Tally()
    status = pytest.main(pytest_arguments(ex, tb, extra), plugins=[tally])
    report_compilation()  # before the verdict: "all N checks pass" is the last line
    total, failed = len(tally.outcomes), tally.count("failed")
    if tally.collection_errors:
        print(f"{ex.marker}: {tally.collection_errors[0]}")
    elif total == 0:
        print(f"{ex.marker}: no checks ran (pytest exit status {int(status)})")
    else:
        skipped = tally.count("skipped")
        why = "; ".join(tally.skip_reasons) or "no reason given"
        note = f" ({skipped} skipped here: {why})" if skipped else ""
        if failed:
            print(f"{ex.marker}: {failed} of {total - skipped} checks fail (the lines in words "
                  f"above){note}; the lesson to derive it from: {ex.where}")
        else:
            print(f"{ex.marker}: all {total - skipped} checks pass{note}.")
    return int(status)


def handed_out(root: Path = ROOT) -> tuple[str, ...] | None:
    """The exercises this copy hands out (its ``tutorials/STUDENT_VERSION.txt``), or ``None`` in
    the teacher's repository (no such file)."""
    try:
        text = (root / "tutorials" / "STUDENT_VERSION.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    listed = {line.split()[0] for line in text.splitlines() if line.strip()}
    return tuple(ex.marker for ex in EXERCISES if ex.marker in listed)


def print_list(handed: Sequence[str] | None) -> None:
    """The exercises, one a line; in a student's copy the ones it hands out marked ``*``."""
    if handed is not None:
        print("Marked *: handed out in this copy, yours to write. The others are written "
              "already (their checks pass here).")
    for ex in EXERCISES:
        mark = "" if handed is None else ("* " if ex.marker in handed else "  ")
        print(f"{mark}{ex.marker:<18} {ex.lesson_file:<34} {ex.summary}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1 :]
    parser = argparse.ArgumentParser(
        prog="python tutorials/check.py",
        description="Check one exercise against this copy's minist; explain each failure in "
                    "one line.",
        epilog="exercises: " + ", ".join(ex.marker for ex in EXERCISES),
    )
    parser.add_argument("exercise", nargs="?", help="the exercise, e.g. ex_gram")
    parser.add_argument("--tb", default="short", choices=("short", "long", "line", "no"),
                        help="traceback style (default: short)")
    parser.add_argument("--list", action="store_true", help="list the exercises and exit")
    args = parser.parse_args(argv)
    if args.list or not args.exercise:
        print_list(handed_out())
        return 0 if args.list else 2
    try:
        ex = get(args.exercise)
    except KeyError as err:
        print(f"check.py: {err.args[0]}", file=sys.stderr)
        return 2
    return check(ex, args.tb, extra)


if __name__ == "__main__":
    sys.exit(main())
