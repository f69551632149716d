"""How the CLI reports a failure: project errors as one line, anything else as a bug."""

from __future__ import annotations

import traceback

import click

from gateway.errors import error_code

EXIT_ERROR = 1
"""A project error: bad input, a refusal from the gateway, a failed verification."""
EXIT_INTERNAL = 2
"""Anything else is a bug (or an environment problem we did not anticipate)."""


def report_project_error(exc: BaseException, *, verbose: bool) -> int:
    """One line ``error [code]: message`` (traceback first with ``--verbose``); the exit status."""
    if verbose:
        traceback.print_exception(exc)
    message = getattr(exc, "message", None)
    click.echo(f"error [{error_code(exc)}]: {message or exc}", err=True)
    return EXIT_ERROR


def report_internal_error(exc: BaseException) -> int:
    """A failure outside our error trees is never dressed up as a user error: full traceback."""
    traceback.print_exception(exc)
    click.echo(
        f"internal error: {type(exc).__name__}: {exc}\n"
        "This is a bug in tiergate (or an unexpected environment); the traceback is above.",
        err=True,
    )
    return EXIT_INTERNAL
