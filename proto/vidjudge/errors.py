"""One error hierarchy for server and client, mapped to gRPC status codes here only.

The server raises these from any stage; the gRPC edge turns them into a status
(unary calls) or an `Error` item (streams). The client turns a status back into
the same class, so `except InvalidVideo:` works on both sides of the wire.
Every error carries a short machine-readable `reason` (snake_case) next to the
human message, so callers can branch without parsing text.
"""

from __future__ import annotations

import grpc

# Metadata key that carries `reason` on a failed unary call.
REASON_METADATA_KEY = "vidjudge-reason"


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


def error_from_status(code: grpc.StatusCode, message: str, reason: str | None = None) -> VidjudgeError:
    """Rebuild the typed error a server sent. Video reasons come back as InvalidVideo."""
    cls = _BY_CODE.get(code, InternalError)
    if cls is InvalidRequest and reason and reason not in _REQUEST_REASONS:
        cls = InvalidVideo
    err = cls(message, reason)
    err.code = code
    return err


# Reasons that describe the request rather than the video (see error_from_status).
_REQUEST_REASONS = {"invalid_request", "unknown_dimension", "missing_prompt", "path_not_allowed", "empty_request"}
