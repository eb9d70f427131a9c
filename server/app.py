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
from vidjudge.server.edge_admission import EdgeAdmission
from vidjudge.server.grpc_service import JudgeService
from vidjudge.server.metrics import Metrics
from vidjudge.server.pipeline import ModelRunner, Pipeline
from vidjudge.v1 import judge_pb2, judge_pb2_grpc

log = logging.getLogger("vidjudge.server")
SERVICE_NAME = judge_pb2.DESCRIPTOR.services_by_name["Judge"].full_name


def create_encoder_for(bundle: Bundle, config: Config):
    from vidjudge.server.encoder.select import select_encoder

    v = bundle.manifest.vision
    sel = select_encoder(config.encoder.backend, bundle_root=bundle.root, onnx_path=bundle.encoder_path,
                         checkpoint_dir=bundle.llm_path, grid_thw=tuple(v.grid_thw),
                         threads=auto_threads(config.encoder.threads), tensorrt_record=v.tensorrt)
    return sel.encoder


def derived_max_model_len(bundle: Bundle, config: Config) -> int:
    """Longest prompt a request can make: visual tokens + the longest template + the user prompt + margin,
    capped at the model's max_position_embeddings."""
    template = max(len(ids.prefix) + len(ids.suffix)
                   for ids in (bundle.prompt_ids(d, "") for d in bundle.dimensions.values()))
    want = bundle.manifest.vision.num_tokens + template + config.limits.max_prompt_chars + 64
    hf = json.loads((bundle.llm_path / "config.json").read_text())
    cap = hf.get("text_config", {}).get("max_position_embeddings") or hf.get("max_position_embeddings")
    return min(want, int(cap)) if cap else want


def create_scorer_for(bundle: Bundle, config: Config):
    # (The torchvision hook vLLM installs need is in place: vidjudge.server installs it at import.)
    m, sc = bundle.manifest, config.scorer
    if sc.backend in ("auto", "vllm"):
        try:
            from vidjudge.server.scorer.vllm_backend import VllmScorer

            # Raises ImportError when the vllm package is missing (checked before any engine starts).
            return VllmScorer(bundle.llm_path, video_token_id=bundle.video_token_id, config=sc,
                              merge_size=m.preprocess.merge_size,
                              max_model_len=sc.max_model_len or derived_max_model_len(bundle, config))
        except ImportError as e:
            # Expected under auto on a machine without vLLM; worth a warning when vllm was asked for.
            log.log(logging.INFO if sc.backend == "auto" else logging.WARNING,
                    "scorer backend vllm unavailable (%s: %s); falling back to the transformers reference",
                    type(e).__name__, e)
    from vidjudge.server.scorer.transformers_backend import TransformersScorer

    return TransformersScorer(bundle.llm_path, video_token_id=bundle.video_token_id,
                              merge_size=m.preprocess.merge_size, tokens_per_second=m.vision.tokens_per_second,
                              threads=auto_threads(sc.threads))


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
        runners[bundle.name] = ModelRunner(bundle, create_encoder_for(bundle, config),
                                           create_scorer_for(bundle, config), config, metrics)
        log.info("loaded bundle %s from %s: dimensions %s; encoder %s, scorer %s", bundle.name, bundle.root,
                 ", ".join(bundle.dimensions), runners[bundle.name].encoder.name, runners[bundle.name].scorer.name)
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
            dead = [name for name, r in self.pipeline.runners.items() if getattr(r.scorer, "errored", False)]
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
