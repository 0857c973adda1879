"""The one error type for anything a user can get wrong: bad files, bad values, missing devices.

The CLI prints its message on one line and exits with status 2; anything else that escapes is a bug.
"""


class OnbeatError(Exception):
    """A problem with the user's input or environment, explained in one line."""
