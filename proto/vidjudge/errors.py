"""One error hierarchy for server and client, mapped to gRPC status codes here only.

The server raises these from any stage; the gRPC edge turns them into a status
(unary calls) or an `Error` item (streams). The client turns a status back into
the same class, so `except InvalidVideo:` works on both sides of the wire.
Every error carries a short machine-readable `reason` (snake_case) next to the
human message, so callers can branch without parsing text.
"""

from __future__ import annotations

import grpc

# Metadata keys that carry `reason` and the error's class name on a failed unary call.
REASON_METADATA_KEY = "vidjudge-reason"
KIND_METADATA_KEY = "vidjudge-error"


class VidjudgeError(Exception):
    """Base class. `code` is the gRPC status the error maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason: str = "internal"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"


class InvalidRequest(VidjudgeError):
    """The request itself is malformed: unknown dimension, missing prompt, bad path."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "invalid_request"


class InvalidVideo(InvalidRequest):
    """The video cannot be judged: not a video, no video stream, truncated, over a limit."""

    default_reason = "invalid_video"


class ModelNotFound(VidjudgeError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = "model_not_found"


class Overloaded(VidjudgeError):
    """Admission refused the request: queues full. Retry later (with backoff)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "overloaded"


class DeadlineExceeded(VidjudgeError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "deadline_exceeded"


class Cancelled(VidjudgeError):
    code = grpc.StatusCode.CANCELLED
    default_reason = "cancelled"


class Unavailable(VidjudgeError):
    """The server is starting, draining or an engine died. Retry elsewhere or later."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "unavailable"


class InternalError(VidjudgeError):
    code = grpc.StatusCode.INTERNAL
    default_reason = "internal"


class JudgeOutputError(InternalError):
    """The judge model answered, but not in a form its head can read (e.g. no parsable score line
    after the retry). Reported for that video and dimension only."""

    default_reason = "unparsable_output"


_BY_CODE: dict[grpc.StatusCode, type[VidjudgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}
_CODE_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def status_code_from_int(value: int) -> grpc.StatusCode:
    return _CODE_BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def _classes(base: type[VidjudgeError] = VidjudgeError) -> dict[str, type[VidjudgeError]]:
    out = {base.__name__: base}
    for sub in base.__subclasses__():
        out.update(_classes(sub))
    return out


def error_class(name: str) -> type[VidjudgeError] | None:
    """The error class called `name` (as the server sends it in KIND_METADATA_KEY), or None."""
    return _classes().get(name)


def error_from_status(code: grpc.StatusCode, message: str, reason: str | None = None,
                      kind: str | None = None) -> VidjudgeError:
    """Rebuild the typed error a server sent: by its class name (`kind`) when the server named one that
    maps to the same status code, else by the status code alone. The class hierarchy above is the
    only source: no list of reasons to keep in sync."""
    cls = error_class(kind) if kind else None
    if cls is None or cls.code != code:
        cls = _BY_CODE.get(code, InternalError)
    err = cls(message, reason)
    err.code = code
    return err
