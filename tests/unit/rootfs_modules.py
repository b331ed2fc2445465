"""Import the image's device-side Python modules (rootfs/usr/lib/x0tta6bl4/*.py) in tests on the host."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

DEVICE_LIB = pathlib.Path(__file__).resolve().parents[2] / "rootfs/usr/lib/x0tta6bl4"


def load(name: str) -> ModuleType:
    mod_name = f"x0_device_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, DEVICE_LIB / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod  # dataclasses look their module up while the class is made
        spec.loader.exec_module(mod)
    return sys.modules[mod_name]
