"""The one exception type that reaches users.

Anything a user can cause -- a bad file, a bad option, a device that is not there -- raises
:class:`MinistError` with a one-line message that names the file or option and the problem.
The command line prints that line and exits with status 2; it never shows a traceback for it.
"""


class MinistError(Exception):
    """A problem with the user's input or environment, explained in one line."""
