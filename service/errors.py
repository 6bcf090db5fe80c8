"""Domain exceptions, raised deep and turned into HTTP problems in one place (the API layer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec or its weights: which layer, which field, and why."""

    layer: str | None
    field: str | None
    message: str

    def to_dict(self) -> dict:
        return {"layer": self.layer, "field": self.field, "message": self.message}


class ConvserveError(Exception):
    """Base of every error convserve reports to a user."""

    title = "Error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class SpecError(ConvserveError):
    """A spec, or the weights given for it, failed validation; carries every problem found."""

    title = "Invalid model specification"
    #: the line the command line prints above the problems
    headline = "the spec is invalid"

    def __init__(self, problems: list[Problem], detail: str | None = None):
        self.problems = list(problems)
        if detail is None:
            n = len(self.problems)
            first = self.problems[0].message if self.problems else "no details"
            detail = first if n == 1 else f"{n} problems, the first: {first}"
        super().__init__(detail)


class WeightsError(SpecError):
    """The weights file, or arrays in it, do not fit a spec that is itself valid."""

    title = "Invalid weights"
    headline = "the weights do not fit the spec"


class InvalidInput(ConvserveError):
    """An input tensor or image does not fit the model."""

    title = "Invalid input"


class NotFound(ConvserveError):
    title = "Not found"


class Conflict(ConvserveError):
    title = "Conflict"


class Malformed(ConvserveError):
    """The request itself cannot be read: bad JSON, a missing part, a wrong field type."""

    title = "Malformed request"


class TooLarge(ConvserveError):
    title = "Payload too large"


class UnsupportedMedia(ConvserveError):
    title = "Unsupported media type"


class Unauthorized(ConvserveError):
    title = "Unauthorized"


class Forbidden(ConvserveError):
    title = "Forbidden"


class RequestTimeout(ConvserveError):
    """The client did not send its whole request in the time allowed."""

    title = "Request Timeout"


class Unavailable(ConvserveError):
    """The server cannot take this request now (queue full, waited too long): try again."""

    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1):
        super().__init__(detail)
        self.retry_after = retry_after


class IntegrityFailure(ConvserveError):
    """Stored data no longer matches its checksum: the server's fault, never the client's."""

    title = "Stored data is corrupt"
