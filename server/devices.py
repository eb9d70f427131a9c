"""Where torch work runs and in which dtype: one rule for the encoder and the LLM backends."""

from __future__ import annotations


def gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    if device != "auto":
        return device
    return "cuda" if gpu_available() else "cpu"


def resolve_dtype(dtype: str, device: str):
    """'auto' -> float32 on CPU (parity with the reference), bfloat16 on a GPU; else the named torch dtype."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)
