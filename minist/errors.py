"""The one exception type that reaches users.

Anything a user can cause -- a bad file, a bad option, a device that is not there -- raises
:class:`MinistError` with a one-line message that names the file or option and the problem.
The command line prints that line and exits with status 2; it never shows a traceback for it.
"""


class MinistError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def message_line(error: BaseException) -> str:
    """The message of ``error`` squeezed onto one line (its type's name when it has none): to
    quote a library's error inside a :class:`MinistError`."""
    return " ".join(str(error).split()) or type(error).__name__
