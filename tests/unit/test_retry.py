import grpc
import pytest

from vidjudge.client.retry import Attempts, RetryPolicy
from vidjudge.errors import DeadlineExceeded, InvalidVideo, Overloaded


class FakeRpcError(grpc.RpcError):
    """A failed call as grpc reports it (code, details, trailing metadata)."""

    def __init__(self, code, details="", reason=None, kind=None):
        self._code, self._details, self._reason, self._kind = code, details, reason, kind

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return tuple((k, v) for k, v in (("vidjudge-reason", self._reason), ("vidjudge-error", self._kind)) if v)


def test_retryable_codes_back_off_until_attempts_run_out():
    a = Attempts(RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.15), timeout=None, target="t")
    busy = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", "too_many_requests")
    a.time_left()
    assert 0 <= a.pause_after(busy) <= 0.1
    a.time_left()
    assert 0 <= a.pause_after(busy) <= 0.15  # capped
    a.time_left()
    with pytest.raises(Overloaded, match="full") as e:
        a.pause_after(busy)
    assert e.value.reason == "too_many_requests"


def test_final_codes_raise_their_typed_error_at_once():
    a = Attempts(RetryPolicy(), timeout=10, target="t")
    a.time_left()
    with pytest.raises(InvalidVideo) as e:
        a.pause_after(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no video stream", "no_video_stream",
                                   "InvalidVideo"))
    assert e.value.reason == "no_video_stream"


def test_the_deadline_bounds_pauses_and_attempts():
    a = Attempts(RetryPolicy(initial_backoff_s=100, max_backoff_s=100), timeout=0.05, target="host:1")
    assert 0 < a.time_left() <= 0.05
    assert a.pause_after(FakeRpcError(grpc.StatusCode.UNAVAILABLE)) <= 0.05
    a.deadline -= 1  # time passes
    with pytest.raises(DeadlineExceeded, match="host:1 within 0.05s"):
        a.time_left()
