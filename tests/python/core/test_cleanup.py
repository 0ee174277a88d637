"""emergency_cleanup frees real garbage in the calling process and reports it; it never loads torch."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

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
        from python_backend import emergency_cleanup

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
        from python_backend import emergency_cleanup
        report = emergency_cleanup()
        print(json.dumps({"torch": "torch" in sys.modules, "steps": [s.detail for s in report.steps]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["torch"] is False
    assert "skipped: torch not loaded" in result["steps"]


def test_package_import_is_light() -> None:
    code = ("import sys, python_backend, python_backend.monitor, python_backend.guard, python_backend.runs; "
            "print(sorted(m for m in ('torch', 'monai', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_seed_names_import() -> None:
    from python_backend import (  # noqa: F401
        GPUMonitor,
        MemoryMonitor,
        emergency_cleanup,
        gpu_safe_context,
        memory_safe_context,
        safe_execution,
    )

    assert MemoryMonitor().check_memory()["status"] in {"normal", "warning", "critical"}
