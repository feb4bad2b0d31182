"""The one error type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit code 2; everything else is a bug
and keeps its traceback.
"""


class InputError(Exception):
    """Bad input or configuration. The message names the file / row / field / option."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
