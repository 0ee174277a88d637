"""emergency_cleanup frees real garbage in the calling process and reports it; it never loads torch."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

MIB = 2**20


def test_cleanup_frees_cyclic_garbage_and_reports_the_drop() -> None:
    gc.disable()  # otherwise the collector might free it before we ask
    try:
        nodes = []
        for _ in range(40):
            node: dict[str, object] = {"data": bytearray(5 * MIB)}
            node["self"] = node  # a cycle: only the cyclic collector can free it
            nodes.append(node)
        del nodes, node
        from crashguard import emergency_cleanup

        report = emergency_cleanup()
    finally:
        gc.enable()
    assert report.rss_freed > 150 * MIB, report
    names = [s.name for s in report.steps]
    assert names == ["gc.collect", "torch.cuda.empty_cache", "malloc_trim"]
    as_dict = report.to_dict()
    assert as_dict["rss_freed"] == report.rss_before - report.rss_after


def test_cleanup_does_not_import_torch() -> None:
    code = textwrap.dedent("""
        import json, sys
        from crashguard import emergency_cleanup
        report = emergency_cleanup()
        print(json.dumps({"torch": "torch" in sys.modules, "steps": [s.detail for s in report.steps]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["torch"] is False
    assert "skipped: torch not loaded" in result["steps"]


def test_package_import_is_light() -> None:
    code = ("import sys, crashguard, crashguard.monitor, crashguard.guard, crashguard.runs; "
            "print(sorted(m for m in ('torch', 'monai', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_seed_names_import() -> None:
    from crashguard import (  # noqa: F401
        GPUMonitor,
        MemoryMonitor,
        emergency_cleanup,
        gpu_safe_context,
        memory_safe_context,
        safe_execution,
    )

    assert MemoryMonitor().check_memory()["status"] in {"normal", "warning", "critical"}


class _BrokenCuda:
    """torch.cuda after a device-side assert: the context is poisoned and every call raises (a GPU cannot exist
    here; the `gpu` test test_sticky_cuda_error_never_escapes_a_cleanup triggers the real one)."""

    def __init__(self) -> None:
        self.reserved = 512 * MIB

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def memory_reserved(self, device: int = 0) -> int:
        return self.reserved

    def synchronize(self, device: int | None = None) -> None:
        raise RuntimeError("CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously "
                           "reported at some other API call")

    def empty_cache(self) -> None:
        raise AssertionError("not reached: synchronize failed first")


def test_a_sticky_cuda_error_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=_BrokenCuda()))
    from crashguard import emergency_cleanup

    report = emergency_cleanup()
    step = next(s for s in report.steps if s.name == "torch.cuda.empty_cache")
    assert step.done is False
    assert step.detail == "CUDA error: RuntimeError: CUDA error: device-side assert triggered"
    assert [s.name for s in report.steps] == ["gc.collect", "torch.cuda.empty_cache", "malloc_trim"]
    assert report.steps[-1].done  # the steps after the failing one still ran


def test_libc_is_resolved_once_without_spawning(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_library spawns `ldconfig -p` (and gcc, ld) on every call; cleanup must not pay that, ever."""
    import ctypes.util

    from crashguard import emergency_cleanup

    spawned: list[object] = []
    real_popen = subprocess.Popen.__init__

    def record(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        spawned.append(args)
        real_popen(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    def no_find_library(name: str) -> None:
        raise AssertionError(f"find_library({name!r}) called")

    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    monkeypatch.setattr(ctypes.util, "find_library", no_find_library)
    for _ in range(3):
        trim = next(s for s in emergency_cleanup().steps if s.name == "malloc_trim")
        assert trim.done, trim.detail
    assert spawned == []
