"""Shared by the infra tests: the repository root and loading scripts kept in infra/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def load_infra_script(name: str) -> ModuleType:
    """Import ``infra/<name>.py``: infra/ holds scripts, not a package."""
    module_name = f"hitmap_infra_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, INFRA / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
