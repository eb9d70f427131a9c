import os

import pytest

from vidjudge.errors import InvalidRequest, InvalidVideo, Overloaded, Unavailable
from vidjudge.server.admission import Admission
from vidjudge.server.media import video_source


def test_admission_bounds_count_and_bytes_and_releases():
    a = Admission(max_in_flight=2, max_bytes=100)
    a.acquire(60)
    with pytest.raises(Overloaded, match="bytes") as e:
        a.acquire(50)
    assert e.value.reason == "too_many_bytes"
    a.acquire(40)
    with pytest.raises(Overloaded, match="2 requests in flight"):
        a.acquire(0)
    a.release(60)
    with a.slot(10):
        assert a.in_flight == 2
    assert (a.in_flight, a.bytes) == (1, 40)
    a.draining = True
    with pytest.raises(Unavailable, match="shutting down"):
        a.acquire(0)


def test_inline_bytes_checks():
    assert video_source(b"abc", None, [], 10).data == b"abc"
    with pytest.raises(InvalidVideo, match="empty") as e:
        video_source(b"", None, [], 10)
    assert e.value.reason == "empty_input"
    with pytest.raises(InvalidVideo, match="over the server's 10-byte limit"):
        video_source(b"x" * 11, None, [], 10)
    with pytest.raises(InvalidRequest, match="no video"):
        video_source(None, None, [], 10)


def test_paths_must_resolve_inside_allowed_roots(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    inside = root / "a.mp4"
    inside.write_bytes(b"data")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"data")
    link = root / "escape.mp4"
    os.symlink(outside, link)

    assert video_source(None, str(inside), [root], 100).path == inside.resolve()
    assert video_source(None, "a.mp4", [root], 100).path == inside.resolve()  # relative to the first root
    for bad in (str(outside), str(link), str(root / ".." / "secret.mp4")):
        with pytest.raises(InvalidRequest, match="outside the allowed directories") as e:
            video_source(None, bad, [root], 100)
        assert e.value.reason == "path_not_allowed"
    with pytest.raises(InvalidRequest, match="inline video bytes only"):
        video_source(None, str(inside), [], 100)
    with pytest.raises(InvalidRequest, match="URLs are not fetched"):
        video_source(None, "http://example.com/a.mp4", [root], 100)
    with pytest.raises(InvalidRequest, match="no such file"):
        video_source(None, str(root / "nope.mp4"), [root], 100)
    with pytest.raises(InvalidVideo, match="over the server's 2-byte limit"):
        video_source(None, str(inside), [root], 2)
