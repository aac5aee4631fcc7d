"""The one base of the errors the project reports to a user, as opposed to programming errors.

A reported error says what is wrong with the input, the configuration or the state of a store, and what to do;
the CLI prints its message and exits 1. Anything else (a ``TypeError``, an unexpected ``KeyError``) is a bug and
surfaces with its traceback. Each concern keeps its own error class next to its code and derives from
:class:`ReportedError` as well as from the builtin it has always been (``ValueError``, ``RuntimeError``...), so
callers that catch the builtin keep working.
"""

from __future__ import annotations


class ReportedError(Exception):
    """An error with a message meant for the user: the CLI reports it (exit 1) instead of a traceback."""


class MissingInputError(ReportedError, FileNotFoundError):
    """A file a step reads does not exist yet (an earlier stage has not run, or a path is wrong)."""
