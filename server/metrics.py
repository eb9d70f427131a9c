"""Prometheus metrics, named like the peers' (Triton, vLLM): one registry per server.

A per-server CollectorRegistry (not the global one) lets tests run several
servers in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("vidjudge_requests", "Finished requests (unary calls and stream items) by gRPC code",
                                ["method", "code"], registry=r)
        self.rejections = Counter("vidjudge_rejections", "Requests refused before work started, by reason",
                                  ["reason"], registry=r)
        self.videos = Counter("vidjudge_videos_scored", "Videos scored successfully (rate() gives videos/s)",
                              ["model"], registry=r)
        self.stage_seconds = Histogram("vidjudge_stage_seconds", "Seconds a request spent in each stage",
                                       ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("vidjudge_request_seconds", "Admission-to-response seconds",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("vidjudge_batch_size", "Items per batch run on a backend", ["stage"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("vidjudge_batch_seconds", "Backend seconds per batch", ["stage"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("vidjudge_queue_depth", "Items waiting in each stage's queue", ["stage"], registry=r)
        self.in_flight = Gauge("vidjudge_in_flight", "Requests admitted and not yet answered", registry=r)
        # The LLM engine's own counters (vLLM), read at scrape time; absent for the transformers scorer.
        self.engine = {
            key: Gauge(f"vidjudge_llm_engine_{key}", doc, ["model"], registry=r) for key, doc in (
                ("prefix_cache_queries", "Prompt tokens looked up in the engine's prefix cache (since start)"),
                ("prefix_cache_hits", "Prompt tokens found in the engine's prefix cache (since start)"),
                ("running", "Requests the engine's scheduler is running"),
                ("waiting", "Requests waiting in the engine's scheduler"),
            )
        }
        self.shared_joins = Gauge("vidjudge_shared_video_joins", "Requests that joined the decode/encode of the "
                                  "same video already in flight for another request (since start)", registry=r)
        self.decoder_restarts = Gauge("vidjudge_decoder_restarts", "Decode workers replaced after a crash or timeout",
                                      registry=r)

    def batch_observer(self, stage: str):
        def observe(size: int, seconds: float) -> None:
            self.batch_size.labels(stage).observe(size)
            self.batch_seconds.labels(stage).observe(seconds)
        return observe

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics endpoint; returns the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port
