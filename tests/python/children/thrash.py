"""Reclaim thrash for the pressure drill: writes a --mb file, then reads every page of it again and again through a
mapping for --seconds. Run inside a memory group smaller than the file, its pages are evicted and read back from
disk over and over: the tasks stall on memory (PSI "some" rises) while the machine's RAM stays nearly empty. The
file is written by this process, so its pages are charged to its group; it is removed at the end."""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--mb", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    try:
        with open(args.file, "wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(2**20))
            out.flush()
            os.fsync(out.fileno())
        with open(args.file, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            pages = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
            count = len(pages) // mmap.PAGESIZE
            total = 0
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                for page in range(count):
                    total += pages[page * mmap.PAGESIZE]
            pages.close()
    finally:
        if os.path.exists(args.file):
            os.unlink(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
