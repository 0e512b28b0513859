"""Errors the toolkit reports to the user instead of a traceback."""


class UsageError(Exception):
    """Bad input from the user. The message says what is wrong and how to fix it, on one line.
    The command line prints it and exits with code 2."""


class NotApplicable(Exception):
    """A method that cannot run on this model (no conv layer for Grad-CAM, no PyTorch twin for
    Meaningful Perturbation). The run reports the reason in one line and goes on."""
