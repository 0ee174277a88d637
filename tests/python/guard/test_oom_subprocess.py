"""A real CPU out-of-memory under RLIMIT_AS in a child process, recovered by safe_execution's retry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

CHILD = textwrap.dedent("""
    import json, logging, resource, sys
    import torch
    from crashguard.guard import Backoff, safe_execution, shrink_kwarg

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Address space = what is mapped now + 768 MiB: a 2 GiB tensor cannot be mapped, a 256 MiB one can.
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    limit = mapped + 768 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    sizes = []

    @safe_execution(max_retries=4, backoff=Backoff(base=0.01), adapt=shrink_kwarg("mib", factor=0.5))
    def fill(mib):
        sizes.append(mib)
        t = torch.ones(mib * 2**20, dtype=torch.uint8)
        t[-1] = 7  # touch the memory
        return t.numel()

    total = fill(mib=2048)
    print(json.dumps({"sizes": sizes, "total": total}))
""")


def test_real_cpu_oom_is_recovered_with_a_smaller_allocation(repo_root) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                            cwd=repo_root)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["sizes"][0] == 2048
    assert len(outcome["sizes"]) >= 2  # at least one real OOM happened
    final = outcome["sizes"][-1]
    assert final < 768 and outcome["total"] == final * 2**20
    assert "can't allocate memory" in result.stderr or "cpu_oom" in result.stderr
