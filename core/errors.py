"""The one error type the command line turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user. The message says what is wrong and how to fix it, on one line."""
