"""Model families: one module each, chosen by a bundle's `manifest.family` (see base.py).

Registered by name -> "module:Class", imported only when a bundle of that family loads.
"""

from __future__ import annotations

import importlib

FAMILIES = {
    "qwen2_5_vl": "vidjudge.server.families.qwen2_5_vl:Qwen25VLFamily",
    "qwen2_5_vl_frames": "vidjudge.server.families.qwen2_5_vl_frames:Qwen25VLFramesFamily",
    "love": "vidjudge.server.families.love:LoveFamily",
}


def family_class(name: str):
    """The Family class registered as `name`; KeyError naming the known families otherwise."""
    try:
        target = FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family '{name}' (this vidjudge serves: {', '.join(FAMILIES)})") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
