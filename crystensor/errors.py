"""The exceptions crystensor raises for problems a user can fix.

The CLI turns an :class:`InputError` into one red line and exit code 2, so its message must name
the bad value and say what to do instead.
"""

from __future__ import annotations

__all__ = ["CrystensorError", "InputError"]


class CrystensorError(Exception):
    """Base class of crystensor's own errors."""


class InputError(CrystensorError, ValueError):
    """Bad input from the user: a malformed file, a wrong shape, a non-finite value, ..."""
