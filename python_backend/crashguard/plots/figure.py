"""One place that creates and always closes figures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DPI = 100


@contextmanager
def png_figure(out: str | Path, width_px: int, height_px: int, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """A figure of exactly width_px x height_px saved to `out` on success, closed in every case."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, **subplots)
    try:
        yield fig, axes
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size must stay what was asked
    finally:
        plt.close(fig)


def open_figures() -> int:
    """How many pyplot figures are open (tests use this to prove nothing leaks)."""
    import matplotlib.pyplot as plt

    return len(plt.get_fignums())
