"""Admission at the gRPC edge: a full server refuses a Score call before reading its video.

`admission.Admission` bounds the requests in flight; the pipeline used to reserve a slot
after gRPC had received the whole request and parsed it into protobuf objects. Under a
burst (10x the limit, inline videos of hundreds of KB each) every refusal then waited for
its payload to arrive and be parsed behind everyone else's: refusals took 0.8 s (p50) to
1.7 s (p99) to reach the client.

`EdgeAdmission`, a `grpc.aio.ServerInterceptor`, reserves the slot from the call's name
alone, when gRPC asks which handler serves it, before any message is read:

- full (or draining): the call gets a handler that answers RESOURCE_EXHAUSTED (or
  UNAVAILABLE) at once, with the usual `vidjudge-reason`, and never reads the request.
  The handler is request-streaming on purpose: gRPC reads a unary call's message before
  calling its handler, a request-streaming one only when the handler asks (a unary call
  is the same on the wire). The unread payload is dropped with the call: memory stays
  bounded by HTTP/2 flow control, not by the burst.
- admitted: the call's handler is wrapped the same way. It reads the one message as bytes,
  holds their size against the byte bound (RESOURCE_EXHAUSTED ``too_many_bytes`` if over),
  parses it, and runs the real handler with the slot marked as held (`holds_slot()`, so the
  pipeline does not reserve a second one).

The slot is released exactly once however the call ends (answered, failed, aborted,
cancelled before or after its message arrived): by the wrapped handler as it returns, and
otherwise by a done-callback on the call's task; a `_Ticket` makes the second a no-op.

What a refused call still costs is the part of its payload the client sends before the
refusal reaches it. With gRPC's defaults (BDP probing) the per-stream window grows to MiBs,
so a burst sends every refused video in full (9 MB for 40 calls of 235 KB, measured) and the
server's transport receives and drops it all, on the cores the refusals need.
`unread_window_options` caps the window a call gets before its handler reads
(`server.unread_window_kb`): refused calls then send only that much. It is off by default
because the cap needs BDP probing off, and then a call being read is granted its message a
window at a time: a 16 MiB upload over a 2 ms round trip took 95 ms instead of 47, and under
load with 14-64 MB videos the server fell from 107-143% to 87% of its decode-bound ceiling.
On 2 shared cores it lowered the bare gRPC floor's refusal p99 (243 -> 172-199 ms) but not
the full server's (358 vs 354 ms, within noise): there the admitted work dominates.

Only unary Score calls are admitted here; ScoreStream items are admitted one by one in
the pipeline, as before (a stream's items arrive over time, not in one burst).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterable

import grpc

from vidjudge.errors import REASON_METADATA_KEY, InvalidRequest, VidjudgeError
from vidjudge.server.admission import Admission
from vidjudge.v1 import judge_pb2

log = logging.getLogger(__name__)

_SERVICE = judge_pb2.DESCRIPTOR.services_by_name["Judge"].full_name
SCORE_METHOD = f"/{_SERVICE}/Score"


def unread_window_options(kib: int) -> list[tuple[str, int]]:
    """gRPC server options that cap an unread call's HTTP/2 window at `kib` KiB (0: gRPC's default)."""
    if kib <= 0:
        return []
    # Both are needed: BDP probing alone raises the window past any lookahead we set.
    return [("grpc.http2.lookahead_bytes", kib * 1024), ("grpc.http2.bdp_probe", 0)]


class _Ticket:
    """One admitted call's hold on the admission bounds; released once, whoever asks first."""

    __slots__ = ("_admission", "_lock", "nbytes", "released")

    def __init__(self, admission: Admission):
        self._admission = admission
        self._lock = threading.Lock()
        self.nbytes = 0
        self.released = False

    def add_bytes(self, nbytes: int) -> None:
        self._admission.add_bytes(nbytes)  # raises Overloaded (too_many_bytes) without holding them
        self.nbytes += nbytes

    def release(self, *_: object) -> None:
        with self._lock:
            if self.released:
                return
            self.released = True
        self._admission.release(self.nbytes)


_held: contextvars.ContextVar[_Ticket | None] = contextvars.ContextVar("vidjudge_edge_admission", default=None)


def holds_slot() -> bool:
    """True inside a call the edge admitted: its slot (count and bytes) is held already."""
    ticket = _held.get()
    return ticket is not None and not ticket.released


class EdgeAdmission(grpc.aio.ServerInterceptor):
    """Reserve admission for `methods` (default: Score) before gRPC reads the request."""

    def __init__(self, admission: Admission, metrics=None, methods: Iterable[str] = (SCORE_METHOD,)):
        self._admission = admission
        self._metrics = metrics
        self._methods = frozenset(methods)

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method not in self._methods:
            return await continuation(handler_call_details)
        # 1. A slot by count now; bytes once the payload is read (its size is not known before).
        try:
            self._admission.acquire(0)
        except VidjudgeError as err:
            return self._refusal(method, err)
        ticket = _Ticket(self._admission)
        # 2. The safety net: whatever happens to the call from here, its task ends and releases.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(ticket.release)
        try:
            handler = await continuation(handler_call_details)
        except BaseException:
            ticket.release()
            raise
        if handler is None or handler.request_streaming or handler.response_streaming:
            ticket.release()  # not a unary handler (or none): nothing of ours to guard
            return handler
        return grpc.stream_unary_rpc_method_handler(
            self._admitted(method, handler, ticket), request_deserializer=None,
            response_serializer=handler.response_serializer)

    # ------------------------------------------------------------------ handlers

    def _refusal(self, method: str, err: VidjudgeError) -> grpc.RpcMethodHandler:
        self._count(method, err)

        async def refuse(request_iterator, context):
            await context.abort(err.code, err.message, trailing_metadata=((REASON_METADATA_KEY, err.reason),))

        return grpc.stream_unary_rpc_method_handler(refuse)

    def _admitted(self, method: str, handler: grpc.RpcMethodHandler, ticket: _Ticket):
        parse = handler.request_deserializer
        inner = handler.unary_unary

        async def admitted(request_iterator, context):
            try:
                # 1. The one request message, as bytes.
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    err: VidjudgeError = InvalidRequest("the call carried no request message", reason="empty_request")
                    await context.abort(err.code, err.message, trailing_metadata=((REASON_METADATA_KEY, err.reason),))
                # 2. Its size against the byte bound, before it becomes Python objects.
                try:
                    ticket.add_bytes(len(raw))
                except VidjudgeError as e:
                    self._count(method, e)
                    await context.abort(e.code, e.message, trailing_metadata=((REASON_METADATA_KEY, e.reason),))
                request = parse(raw) if parse is not None else raw
                # 3. The real handler, told that the slot is held.
                token = _held.set(ticket)
                try:
                    return await inner(request, context)
                finally:
                    _held.reset(token)
            finally:
                ticket.release()

        return admitted

    def _count(self, method: str, err: VidjudgeError) -> None:
        """As the service counts and logs a refusal (one INFO line, the request and rejection counters)."""
        name = method.rsplit("/", 1)[-1]
        if self._metrics is not None:
            self._metrics.requests.labels(name, err.code.name).inc()
            self._metrics.rejections.labels(err.reason).inc()
        log.info("%s %s reason=%s: %s", name, err.code.name, err.reason, err.message)


__all__ = ["EdgeAdmission", "holds_slot", "SCORE_METHOD", "unread_window_options"]
