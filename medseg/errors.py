"""One exception type per kind of user mistake; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class MedsegError(Exception):
    """Base class: a problem with what the user gave us, not a bug in medseg."""


class InputError(MedsegError):
    """An input file or folder is missing, unreadable, or not what the command needs."""


class GeometryError(InputError):
    """An image's geometry would silently corrupt the result (gaps, tilt, mixed series...)."""


class BundleError(MedsegError):
    """A bundle cannot be found or its configuration is unusable."""


class MedsegWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it in one line)."""
