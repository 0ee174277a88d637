"""Plots render PNGs of the asked size and never leave figures open, even when drawing fails."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from crashguard.plots import (
    MemoryPoint,
    TimelineEvent,
    plot_memory_timeline,
    plot_segmentation_overlay,
    plot_training_curves,
)
from crashguard.plots.figure import open_figures

np = pytest.importorskip("numpy")
nib = pytest.importorskip("nibabel")


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_memory_timeline(tmp_path: Path) -> None:
    points = [MemoryPoint(1000 + t, 40 + t / 2, {0: 20 + t}) for t in range(60)]
    events = [TimelineEvent(1020, "oom", "OOM: micro-batch 4 -> 2"), TimelineEvent(1040, "checkpoint", "ckpt")]
    out = plot_memory_timeline(points, tmp_path / "memory.png", events, width_px=900, height_px=300)
    assert _png_size(out) == (900, 300)
    assert open_figures() == 0


def test_training_curves(tmp_path: Path) -> None:
    losses = [(s, 1.0 / (s + 1)) for s in range(50)]
    dice = {"TC": [(e, e / 10) for e in range(5)], "WT": [(e, e / 8) for e in range(5)], "ET": []}
    out = plot_training_curves(losses, dice, tmp_path / "curves.png", width_px=800, height_px=320)
    assert _png_size(out) == (800, 320)
    assert open_figures() == 0


def test_failed_plot_closes_its_figure(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_training_curves([(0, 1.0)], {"TC": [(0,)]}, tmp_path / "bad.png")  # type: ignore[list-item]
    assert open_figures() == 0
    assert not (tmp_path / "bad.png").exists()


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no memory samples"):
        plot_memory_timeline([], tmp_path / "m.png")
    with pytest.raises(ValueError, match="no training metrics"):
        plot_training_curves([], {}, tmp_path / "c.png")


def _volume(tmp_path: Path) -> tuple[Path, Path]:
    shape = (48, 48, 32)
    image = np.random.default_rng(0).normal(size=(*shape, 4)).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[15:30, 15:30, 10:20] = 1
    label[20:25, 20:25, 12:18] = 3
    image_path, label_path = tmp_path / "case.nii.gz", tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(image, np.eye(4)), image_path)
    nib.save(nib.Nifti1Image(label, np.eye(4)), label_path)
    return image_path, label_path


def test_overlay_with_prediction(tmp_path: Path) -> None:
    image_path, label_path = _volume(tmp_path)
    out = plot_segmentation_overlay(image_path, label_path, tmp_path / "overlay.png", prediction_path=label_path,
                                    count=3, tile_px=200)
    assert _png_size(out) == (600, 400)
    assert open_figures() == 0


def test_overlay_slices_lie_in_the_labelled_region(tmp_path: Path) -> None:
    from crashguard.plots.overlay import _pick_slices

    _, label_path = _volume(tmp_path)
    chosen = _pick_slices(label_path, 3)
    assert chosen == [10, 14, 19]


def _write_metrics(run_dir: Path) -> None:
    import json

    run_dir.mkdir(parents=True)
    rows = [{"type": "step", "time": 100 + s, "step": s, "epoch": s // 10, "loss": 1 - s / 40,
             "ram_percent": 30 + s / 2} for s in range(1, 31)]
    rows.insert(12, {"type": "event", "time": 112.5, "step": 12, "event": "oom_backoff",
                     "message": "cpu_oom: micro-batch 4 -> 2"})
    rows += [{"type": "val", "time": 100 + 10 * e, "step": 10 * e, "epoch": e, "dice_tc": 0.1 * e,
              "dice_wt": 0.2 * e, "dice_et": None} for e in range(4)]
    text = "\n".join(json.dumps(r) for r in rows) + "\n{torn line"
    (run_dir / "metrics.jsonl").write_text(text)


def test_plot_run_from_metrics(tmp_path: Path) -> None:
    from crashguard.plots.from_run import plot_run

    _write_metrics(tmp_path / "run")
    written = plot_run(tmp_path / "run")
    assert [p.name for p in written] == ["memory.png", "curves.png"]
    assert all(p.parent == tmp_path / "run" / "plots" for p in written)
    assert open_figures() == 0


def test_plots_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    _write_metrics(tmp_path / "run")
    image, label = _volume(tmp_path)
    result = subprocess.run([sys.executable, "-m", "crashguard", "plots", "--run", str(tmp_path / "run"),
                             "--image", str(image), "--label", str(label), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(Path(p).name for p in result.stdout.split()) == ["curves.png", "memory.png", "overlay.png"]
    missing = subprocess.run([sys.executable, "-m", "crashguard", "plots", "--run", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no metrics for this run" in missing.stderr


def test_the_timeline_takes_the_runs_event_log_and_skips_what_is_not_an_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from crashguard.plots import from_run

    _write_metrics(tmp_path / "run")  # with one event of a run written before the event log
    lines = [json.dumps({"time": 120.0, "step": 20, "event": "checkpoint", "message": "checkpoint at step 20"}),
             json.dumps({"time": "soon", "step": 21, "event": "cleanup", "message": "a time that is no number"}),
             json.dumps({"time": 125.0, "step": 25, "event": "ram_backoff", "message": ["not", "text"]}),
             "{torn", json.dumps({"time": 1e308, "event": 3}),
             json.dumps({"time": 110.0, "step": 10, "event": "cleanup", "message": "cleanup on request: freed 5 MiB"})]
    (tmp_path / "run" / "events.jsonl").write_text("\n".join(lines) + "\n")
    seen: list = []

    def timeline(points, out, events, *rest):  # type: ignore[no-untyped-def]
        seen.extend(events)
        return Path(out)

    monkeypatch.setattr(from_run, "plot_memory_timeline", timeline)
    from_run.plot_run(tmp_path / "run")
    assert [(e.time, e.kind) for e in seen] == [(110.0, "cleanup"), (112.5, "oom"), (120.0, "checkpoint"),
                                               (125.0, "other")]
    assert seen[3].label == "['not', 'text']"  # whatever stands there is only ever a label
