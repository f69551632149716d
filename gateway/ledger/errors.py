"""Errors of the gateway's transparency log, each a problem+json response with a stable code."""

from __future__ import annotations

from gateway.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable


class LogIndexOutOfRange(BadRequest):
    """An entry index at or past the signed tree size (or past the requested ``size``)."""

    code = "log_index_out_of_range"
    title = "Log index out of range"


class LogSizeOutOfRange(BadRequest):
    """A tree size of zero where a proof needs leaves, or larger than the latest checkpoint."""

    code = "log_size_out_of_range"
    title = "Log size out of range"


class LogRangeInvalid(BadRequest):
    """``start``/``end`` or ``from``/``to`` in the wrong order, or a page that is too large."""

    code = "log_range_invalid"
    title = "Invalid log range"


class LogEntryNotFound(NotFound):
    code = "log_entry_not_found"
    title = "Log entry not found"


class LogEntryForbidden(Forbidden):
    """The entry exists (its leaf hash is public) but the caller may not read its content."""

    code = "log_entry_forbidden"
    title = "Log entry not visible to you"


class LogNotReady(ServiceUnavailable):
    """No checkpoint has been signed yet."""

    code = "log_not_ready"
    title = "Log not ready"


class LogTampered(ServiceUnavailable):
    """The stored log no longer matches what was signed; the gateway stopped signing."""

    code = "log_tampered"
    title = "Log tampered"
