from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Video(_message.Message):
    __slots__ = ("data", "path")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    path: str
    def __init__(self, data: _Optional[bytes] = ..., path: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "video", "prompt", "dimensions", "inputs")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DimensionInput
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DimensionInput, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    video: Video
    prompt: str
    dimensions: _containers.RepeatedScalarFieldContainer[str]
    inputs: _containers.MessageMap[str, DimensionInput]
    def __init__(self, model: _Optional[str] = ..., video: _Optional[_Union[Video, _Mapping]] = ..., prompt: _Optional[str] = ..., dimensions: _Optional[_Iterable[str]] = ..., inputs: _Optional[_Mapping[str, DimensionInput]] = ...) -> None: ...

class DimensionInput(_message.Message):
    __slots__ = ("question",)
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    question: str
    def __init__(self, question: _Optional[str] = ...) -> None: ...

class LevelProbability(_message.Message):
    __slots__ = ("level", "probability")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    level: str
    probability: float
    def __init__(self, level: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class DimensionResult(_message.Message):
    __slots__ = ("dimension", "score", "scale_min", "scale_max", "levels", "head", "answer", "answer_probability", "rationale", "error")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCALE_MIN_FIELD_NUMBER: _ClassVar[int]
    SCALE_MAX_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    score: float
    scale_min: float
    scale_max: float
    levels: _containers.RepeatedCompositeFieldContainer[LevelProbability]
    head: str
    answer: str
    answer_probability: float
    rationale: str
    error: Error
    def __init__(self, dimension: _Optional[str] = ..., score: _Optional[float] = ..., scale_min: _Optional[float] = ..., scale_max: _Optional[float] = ..., levels: _Optional[_Iterable[_Union[LevelProbability, _Mapping]]] = ..., head: _Optional[str] = ..., answer: _Optional[str] = ..., answer_probability: _Optional[float] = ..., rationale: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("queue_s", "decode_s", "preprocess_s", "encode_s", "llm_s", "total_s")
    QUEUE_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_S_FIELD_NUMBER: _ClassVar[int]
    ENCODE_S_FIELD_NUMBER: _ClassVar[int]
    LLM_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    queue_s: float
    decode_s: float
    preprocess_s: float
    encode_s: float
    llm_s: float
    total_s: float
    def __init__(self, queue_s: _Optional[float] = ..., decode_s: _Optional[float] = ..., preprocess_s: _Optional[float] = ..., encode_s: _Optional[float] = ..., llm_s: _Optional[float] = ..., total_s: _Optional[float] = ...) -> None: ...

class VideoInfo(_message.Message):
    __slots__ = ("width", "height", "duration_s", "avg_fps", "codec", "rotation", "frames_decoded", "decoder")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    AVG_FPS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    duration_s: float
    avg_fps: float
    codec: str
    rotation: int
    frames_decoded: int
    decoder: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., duration_s: _Optional[float] = ..., avg_fps: _Optional[float] = ..., codec: _Optional[str] = ..., rotation: _Optional[int] = ..., frames_decoded: _Optional[int] = ..., decoder: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("model", "results", "timings", "video")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    model: str
    results: _containers.RepeatedCompositeFieldContainer[DimensionResult]
    timings: StageTimings
    video: VideoInfo
    def __init__(self, model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[DimensionResult, _Mapping]]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., video: _Optional[_Union[VideoInfo, _Mapping]] = ...) -> None: ...

class ScoreStreamRequest(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    request: ScoreRequest
    def __init__(self, id: _Optional[str] = ..., request: _Optional[_Union[ScoreRequest, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "reason", "message", "kind")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    kind: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ScoreStreamResponse(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    response: ScoreResponse
    error: Error
    def __init__(self, id: _Optional[str] = ..., response: _Optional[_Union[ScoreResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class GroupVideo(_message.Message):
    __slots__ = ("id", "generator", "video")
    ID_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    id: str
    generator: str
    video: Video
    def __init__(self, id: _Optional[str] = ..., generator: _Optional[str] = ..., video: _Optional[_Union[Video, _Mapping]] = ...) -> None: ...

class ScoreGroupRequest(_message.Message):
    __slots__ = ("model", "prompt", "videos", "dimensions", "inputs")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DimensionInput
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DimensionInput, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    videos: _containers.RepeatedCompositeFieldContainer[GroupVideo]
    dimensions: _containers.RepeatedScalarFieldContainer[str]
    inputs: _containers.MessageMap[str, DimensionInput]
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., videos: _Optional[_Iterable[_Union[GroupVideo, _Mapping]]] = ..., dimensions: _Optional[_Iterable[str]] = ..., inputs: _Optional[_Mapping[str, DimensionInput]] = ...) -> None: ...

class GroupVideoResult(_message.Message):
    __slots__ = ("id", "generator", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    generator: str
    response: ScoreResponse
    error: Error
    def __init__(self, id: _Optional[str] = ..., generator: _Optional[str] = ..., response: _Optional[_Union[ScoreResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ScoreGroupResponse(_message.Message):
    __slots__ = ("model", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    results: _containers.RepeatedCompositeFieldContainer[GroupVideoResult]
    def __init__(self, model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[GroupVideoResult, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DimensionInfo(_message.Message):
    __slots__ = ("name", "description", "head", "scale_min", "scale_max", "levels", "requires_prompt", "inputs", "adapter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    SCALE_MIN_FIELD_NUMBER: _ClassVar[int]
    SCALE_MAX_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    head: str
    scale_min: float
    scale_max: float
    levels: _containers.RepeatedScalarFieldContainer[str]
    requires_prompt: bool
    inputs: _containers.RepeatedScalarFieldContainer[str]
    adapter: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., head: _Optional[str] = ..., scale_min: _Optional[float] = ..., scale_max: _Optional[float] = ..., levels: _Optional[_Iterable[str]] = ..., requires_prompt: _Optional[bool] = ..., inputs: _Optional[_Iterable[str]] = ..., adapter: _Optional[str] = ...) -> None: ...

class FrameSampling(_message.Message):
    __slots__ = ("num_frames", "height", "width", "strategy", "name")
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    num_frames: int
    height: int
    width: int
    strategy: str
    name: str
    def __init__(self, num_frames: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., strategy: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "family", "dimensions", "sampling", "is_default", "encoder_backend", "scorer_backend", "views", "adapters", "encoder_backends", "bundle_sha256")
    class EncoderBackendsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    ENCODER_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SCORER_BACKEND_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    dimensions: _containers.RepeatedCompositeFieldContainer[DimensionInfo]
    sampling: FrameSampling
    is_default: bool
    encoder_backend: str
    scorer_backend: str
    views: _containers.RepeatedCompositeFieldContainer[FrameSampling]
    adapters: _containers.RepeatedScalarFieldContainer[str]
    encoder_backends: _containers.ScalarMap[str, str]
    bundle_sha256: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., dimensions: _Optional[_Iterable[_Union[DimensionInfo, _Mapping]]] = ..., sampling: _Optional[_Union[FrameSampling, _Mapping]] = ..., is_default: _Optional[bool] = ..., encoder_backend: _Optional[str] = ..., scorer_backend: _Optional[str] = ..., views: _Optional[_Iterable[_Union[FrameSampling, _Mapping]]] = ..., adapters: _Optional[_Iterable[str]] = ..., encoder_backends: _Optional[_Mapping[str, str]] = ..., bundle_sha256: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
