"""What every command's bad input must give: one line on stderr, ``minist: error: ...``, naming
what is wrong (shared by the command-line tests)."""

from __future__ import annotations


def assert_one_line_error(err: str, *needles) -> None:
    """``err`` (a command's stderr) is one non-blank line starting ``minist: error: `` and
    holding each of ``needles``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("minist: error: ")
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
