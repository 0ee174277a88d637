"""CUDA_VISIBLE_DEVICES -> NVML devices: indices, UUIDs and prefixes, MIG devices, invalid entries, the order note.
NVML is the stand-in of fake_nvml.py (no driver here); the rules are CUDA's (see monitor/cuda_devices.py)."""

from __future__ import annotations

import pytest
from fake_nvml import FakeGpu, FakeMig, FakeNvml, mig_uuid, uuid

from crashguard.monitor.cuda_devices import inventory, visible_devices
from crashguard.monitor.gpu import GPUMonitor
from crashguard.monitor.nvml import NvmlSession


def _gpus(*specs: FakeGpu) -> list:
    found = inventory(NvmlSession(FakeNvml(list(specs))))  # type: ignore[arg-type]
    assert found is not None
    return found


PLAIN = [FakeGpu(uuid(n)) for n in range(4)]


def _labels(value: str | None, gpus: list | None = None, order: str | None = "PCI_BUS_ID") -> list[str]:
    return [d.label for d in visible_devices(gpus or _gpus(*PLAIN), value, order).devices]


def test_unset_means_every_gpu_in_nvml_order() -> None:
    assert _labels(None) == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]


@pytest.mark.parametrize(("value", "expected"), [
    ("2,3", ["GPU 2", "GPU 3"]),
    ("3,1", ["GPU 3", "GPU 1"]),  # CUDA numbers them in the listed order: cuda:0 is GPU 3
    (" 1 , 0 ", ["GPU 1", "GPU 0"]),
    ("1:abc", ["GPU 1"]),  # CUDA reads an entry's leading digits
    ("0,2,-1,1", ["GPU 0", "GPU 2"]),  # CUDA's own example: the list ends at the invalid entry
    ("0,7,1", ["GPU 0"]),  # no GPU 7
    ("0,,1", ["GPU 0"]),
    ("0,banana,1", ["GPU 0"]),
    ("-1", []),
    ("", []),
    ("1,1", []),  # a device listed twice: CUDA sees none
])
def test_indices(value: str, expected: list[str]) -> None:
    assert _labels(value) == expected


def test_uuids_and_unique_prefixes() -> None:
    assert _labels(f"{uuid(3)},{uuid(0)}") == ["GPU 3", "GPU 0"]
    assert _labels(uuid(2)[:13]) == ["GPU 2"]  # "GPU-89322f37" names one GPU alone
    assert _labels(f"{uuid(1)},GPU-8932") == ["GPU 1"]  # "GPU-8932" fits all four: invalid, the list ends
    assert _labels(f"{uuid(1)},GPU-ffffffff") == ["GPU 1"]  # no such GPU
    assert _labels(f"{uuid(1)},{uuid(1)[:12]}") == []  # the same GPU twice


def test_indices_and_uuids_do_not_mix() -> None:
    assert _labels(f"1,{uuid(2)}") == ["GPU 1"]
    assert _labels(f"{uuid(2)},1") == ["GPU 2"]


MIG_GPU = FakeGpu(uuid(2), name="NVIDIA A100-SXM4-80GB", mig_enabled=True,
                  migs=[FakeMig(mig_uuid(0), gpu_instance=1, compute_instance=0),
                        None,
                        FakeMig(mig_uuid(2), gpu_instance=5, compute_instance=0)])


def _mig_machine() -> list:
    return _gpus(FakeGpu(uuid(0), name="NVIDIA A100-SXM4-80GB", mig_enabled=False),
                 FakeGpu(uuid(1), name="NVIDIA A100-SXM4-80GB", mig_enabled=True),  # MIG on, no instance
                 MIG_GPU)


def test_mig_inventory() -> None:
    gpus = _mig_machine()
    assert [g.mig_enabled for g in gpus] == [False, True, True]
    assert [(m.mig_index, m.gpu_instance, m.compute_instance, m.uuid) for m in gpus[2].migs] == [
        (0, 1, 0, mig_uuid(0)), (2, 5, 0, mig_uuid(2))]  # the empty slot is skipped
    assert gpus[2].migs[1].label == "GPU 2 MIG 2"


def test_mig_devices_by_uuid_and_by_gpu_instance() -> None:
    gpus = _mig_machine()
    assert _labels(mig_uuid(2), gpus) == ["GPU 2 MIG 2"]
    assert _labels(f"MIG-{uuid(2)}/5/0", gpus) == ["GPU 2 MIG 2"]  # the pre-R470 form
    assert _labels(f"MIG-{uuid(2)}/1/0", gpus) == ["GPU 2 MIG 0"]
    assert _labels(f"MIG-{uuid(2)}/9/0", gpus) == []  # no such instance
    # A CUDA process sees one MIG device at most: the first one listed; the GPUs beside it vanish.
    assert _labels(f"{mig_uuid(2)},{mig_uuid(0)}", gpus) == ["GPU 2 MIG 2"]
    assert _labels(f"{uuid(0)},{mig_uuid(0)}", gpus) == ["GPU 2 MIG 0"]


def test_a_gpu_with_mig_on_stands_for_its_first_mig_device() -> None:
    gpus = _mig_machine()
    assert _labels("0", gpus) == ["GPU 0"]
    assert _labels("0,2", gpus) == ["GPU 2 MIG 0"]  # GPU 0 is not visible beside a MIG device
    assert _labels("1", gpus) == []  # MIG on and no instance: nothing to run on
    assert _labels("1,0", gpus) == ["GPU 0"]
    assert _labels(None, gpus) == ["GPU 2 MIG 0"]


def test_mixed_models_warn_that_cuda_may_order_them_differently() -> None:
    gpus = _gpus(FakeGpu(uuid(0), name="NVIDIA GeForce RTX 4090"), FakeGpu(uuid(1), name="NVIDIA RTX A2000"))
    assert visible_devices(gpus, "0", None).note is not None
    assert "CUDA_DEVICE_ORDER" in (visible_devices(gpus, None, "FASTEST_FIRST").note or "")
    assert visible_devices(gpus, "0", "PCI_BUS_ID").note is None
    assert visible_devices(_gpus(*PLAIN), "0", None).note is None  # one model: the orders agree


def test_read_cuda_device_reads_the_mapped_gpu_and_a_mig_devices_own_memory() -> None:
    gib = 2**30
    monitor = GPUMonitor(nvml=FakeNvml([FakeGpu(uuid(0), used=10 * gib), FakeGpu(uuid(1), used=130 * gib),
                                        MIG_GPU]))  # type: ignore[arg-type]
    reading = monitor.read_cuda_device(0, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert reading is not None and (reading.index, reading.uuid, reading.used) == (1, uuid(1), 130 * gib)
    assert monitor.read_cuda_device(1, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) is None
    mig = monitor.read_cuda_device(0, {"CUDA_VISIBLE_DEVICES": mig_uuid(2)})
    assert mig is not None and (mig.index, mig.mig_index, mig.total) == (2, 2, 10 * gib)
    monitor.close()
