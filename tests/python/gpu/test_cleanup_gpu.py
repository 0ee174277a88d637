"""The emergency cleanup on a real GPU: it gives torch's cached VRAM back to the driver (NVML sees it go), and a
sticky CUDA error (a device-side assert) is reported in its step instead of escaping the cleanup request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpu_helpers import GIB, mib, run_json
from locations import CHILDREN

pytestmark = pytest.mark.gpu


def _step(result: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in result["report"]["steps"] if s["name"] == "torch.cuda.empty_cache")


@pytest.mark.gpu_line("cleanup frees cached VRAM (torch reserved and NVML, before/after)")
def test_cleanup_gives_cached_vram_back(cuda: Any, tmp_path: Path,
                                        record_property: Callable[[str, object], None]) -> None:
    result = run_json([str(CHILDREN / "cuda_cleanup.py"), "cache"], cwd=tmp_path)
    report = result["report"]
    assert _step(result)["done"] is True
    assert report["vram_before"] >= 4 * GIB and report["vram_freed"] >= 4 * GIB
    if result["nvml_before"] is None:  # NVML's pids are the host's: a container's own pid namespace hides ours
        nvml = "NVML: this process's pid not visible (container pid namespace)"
    else:
        assert result["nvml_before"] - result["nvml_after"] >= 3.9 * GIB  # the driver got it back
        nvml = f"NVML {mib(result['nvml_before'])} -> {mib(result['nvml_after'])}"
    record_property("figures", f"torch reserved {mib(report['vram_before'])} -> {mib(report['vram_after'])}; "
                               f"{nvml}; {1000 * report['seconds']:.0f} ms")


@pytest.mark.gpu_line("cleanup after a sticky CUDA error (device-side assert): answered, not raised")
def test_a_sticky_cuda_error_does_not_escape_the_cleanup(cuda: Any, tmp_path: Path,
                                                         record_property: Callable[[str, object], None]) -> None:
    result = run_json([str(CHILDREN / "cuda_cleanup.py"), "sticky"], cwd=tmp_path)
    assert result["error"] is not None  # the premise: CUDA is poisoned
    step = _step(result)
    assert step["done"] is False and step["detail"].startswith("CUDA error: ")
    assert [s["name"] for s in result["report"]["steps"]][-1] == "malloc_trim"
    record_property("figures", f"premise: {result['error'][:80]}; cleanup step: {step['detail'][:100]}")
