"""The client rebuilds the server's error classes from the class hierarchy itself (no list of reasons)."""

import grpc
import pytest

from vidjudge import errors
from vidjudge.errors import InvalidRequest, InvalidVideo, JudgeOutputError, error_from_status


def _all_classes(base=errors.VidjudgeError):
    out = [base]
    for sub in base.__subclasses__():
        out += _all_classes(sub)
    return out


@pytest.mark.parametrize("cls", _all_classes(), ids=lambda c: c.__name__)
def test_every_error_class_round_trips_by_name(cls):
    sent = cls("something went wrong", reason="some_new_reason_nobody_listed")
    back = error_from_status(sent.code, sent.message, sent.reason, type(sent).__name__)
    assert type(back) is cls and back.reason == "some_new_reason_nobody_listed" and back.code == sent.code


def test_reasons_the_old_hand_kept_list_missed_keep_their_class():
    for reason in ("prompt_too_long", "llm_rejected", "file_not_found", "missing_input"):
        e = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "m", reason, "InvalidRequest")
        assert type(e) is InvalidRequest
    assert type(error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "m", "no_video_stream", "InvalidVideo")) \
        is InvalidVideo


def test_an_unknown_or_inconsistent_kind_falls_back_to_the_status_code():
    assert type(error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "m", "x", "NoSuchError")) is InvalidRequest
    # A class name that does not match the code is not trusted.
    assert type(error_from_status(grpc.StatusCode.NOT_FOUND, "m", "x", "InvalidVideo")) is errors.ModelNotFound
    assert type(error_from_status(grpc.StatusCode.INTERNAL, "m", "unparsable_output", "JudgeOutputError")) \
        is JudgeOutputError
