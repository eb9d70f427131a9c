"""Rescoring against running servers: calls spread over every `--server`, backoff when one is full.

Each call goes to the server with the fewest calls in flight among those not cooling down. A server
that answers RESOURCE_EXHAUSTED (admission full) or UNAVAILABLE (starting, draining) cools down for a
jittered, growing pause (the client's RetryPolicy) and the call is retried on another server, or on
the same one once its pause ends. After `policy.max_attempts` tries the last error is raised; the
driver leaves that video for the next run instead of committing a failure that was the servers'.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass

from vidjudge.client.aio import AsyncJudgeClient
from vidjudge.client.request import build_request
from vidjudge.client.retry import NO_RETRY, RetryPolicy
from vidjudge.client.rescore.types import DimensionSpec, Job, JudgeInfo
from vidjudge.errors import InvalidRequest, ModelNotFound, Overloaded, Unavailable, VidjudgeError

log = logging.getLogger(__name__)
RESCORE_RETRY = RetryPolicy(max_attempts=30, initial_backoff_s=0.05, max_backoff_s=2.0, multiplier=2.0)


@dataclass
class _Server:
    address: str
    client: AsyncJudgeClient
    in_flight: int = 0
    failures: int = 0  # consecutive "full or away" answers; the cool-down grows with it
    ready_at: float = 0.0  # monotonic time before which no call is sent


class GrpcScorer:
    mode = "server"

    def __init__(self, addresses: list[str], *, model: str = "", timeout: float | None = 600.0,
                 policy: RetryPolicy = RESCORE_RETRY, max_message_mb: int = 80):
        if not addresses:
            raise ValueError("no server address")
        self.model = model
        self.timeout = timeout
        self.policy = policy
        self.addresses = list(addresses)
        self.max_message_mb = max_message_mb
        self.servers: list[_Server] = []
        self.info: JudgeInfo | None = None
        self.rejections = 0  # RESOURCE_EXHAUSTED / UNAVAILABLE answers met (and retried)

    async def start(self) -> JudgeInfo:
        """Ask every server what it judges; all must serve the same judge under `model`.

        Runs on the event loop that will score: grpc.aio channels belong to the loop they are made on."""
        self.servers = [_Server(a, AsyncJudgeClient(a, timeout=self.timeout, retry=NO_RETRY,
                                                    max_message_mb=self.max_message_mb)) for a in self.addresses]
        infos = {}
        for s in self.servers:
            try:
                async with AsyncJudgeClient(s.address, timeout=30, retry=RetryPolicy(max_attempts=5)) as c:
                    models = await c.list_models()
            except VidjudgeError as e:
                raise Unavailable(f"cannot list the models of {s.address}: {e.message}") from None
            chosen = next((m for m in models if (m.name == self.model if self.model else m.is_default)), None)
            if chosen is None:
                raise ModelNotFound(f"{s.address} has no model named '{self.model}' "
                                    f"(it serves {', '.join(m.name for m in models)})")
            infos[s.address] = chosen
        fingerprints = {a: m.bundle_sha256 for a, m in infos.items()}
        if len(set(fingerprints.values())) > 1:
            raise InvalidRequest("the servers judge with different models: " + ", ".join(
                f"{a}: {infos[a].name} ({fp[:12]})" for a, fp in fingerprints.items()) +
                "; point every --server at the same bundle", reason="mixed_judges")
        m = next(iter(infos.values()))
        self.model = m.name
        dims = {d.name: DimensionSpec(d.name, d.requires_prompt, tuple(d.inputs)) for d in m.dimensions}
        self.info = JudgeInfo(name=m.name, checksum=next(iter(fingerprints.values())), dimensions=dims)
        return self.info

    def _pick(self) -> tuple[_Server | None, float]:
        """The least busy server that is ready now, else (None, seconds until one is)."""
        now = time.monotonic()
        ready = [s for s in self.servers if s.ready_at <= now]
        if ready:
            return min(ready, key=lambda s: s.in_flight), 0.0
        return None, min(s.ready_at for s in self.servers) - now

    async def score(self, job: Job):
        req = build_request(job.data, prompt=job.prompt, dimensions=job.dimensions, model=self.model,
                            inputs=job.inputs)
        attempts = 0
        while True:
            server, wait = self._pick()
            if server is None:  # every server is cooling down: wait for the first to be ready
                await asyncio.sleep(wait)
                continue
            attempts += 1
            server.in_flight += 1
            try:
                result = await server.client.score_request(req, timeout=self.timeout)
            except (Overloaded, Unavailable) as e:
                e.scored_by = server.address
                self.rejections += 1
                server.failures += 1
                server.ready_at = time.monotonic() + self.policy.backoff(server.failures)
                if attempts >= self.policy.max_attempts:
                    raise  # transient: the driver leaves this video for the next run
                continue
            except VidjudgeError as e:
                e.scored_by = server.address
                raise
            finally:
                server.in_flight -= 1
            server.failures = 0
            return result, server.address

    async def aclose(self) -> None:
        for s in self.servers:
            await s.client.close()
