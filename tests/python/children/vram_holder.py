"""A known GPU process: holds SIZE_MIB of VRAM in one tensor on cuda:0 until its stdin closes.

usage: vram_holder.py SIZE_MIB
Prints one JSON line once the memory is resident: its pid, the bytes torch's allocator reserved, and the UUID of
the device CUDA calls cuda:0 here (what CUDA_VISIBLE_DEVICES selected), as nvidia-smi writes it.
"""

from __future__ import annotations

import json
import os
import sys

import torch

MIB = 2**20


def main() -> int:
    size = int(sys.argv[1]) * MIB
    block = torch.empty(size, dtype=torch.uint8, device="cuda:0")
    block.fill_(1)  # touched: resident, not only reserved
    torch.cuda.synchronize()
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    prefix = "MIG-" if "MIG" in torch.cuda.get_device_name(0) else "GPU-"
    print(json.dumps({"pid": os.getpid(), "reserved": torch.cuda.memory_reserved(0),
                      "uuid": uuid if uuid.startswith(("GPU-", "MIG-")) else prefix + uuid}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    del block
    return 0


if __name__ == "__main__":
    sys.exit(main())
