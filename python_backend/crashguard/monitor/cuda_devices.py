"""Which NVML device is `cuda:N` in this process: CUDA_VISIBLE_DEVICES (indices, UUIDs, MIG) mapped to NVML.

CUDA numbers the devices it can see from 0, in the order CUDA_VISIBLE_DEVICES lists them; NVML (and nvidia-smi)
numbers every GPU on the machine in PCI bus order. With CUDA_VISIBLE_DEVICES=2,3, `cuda:0` is NVML's GPU 2. The
rules followed here are CUDA's (CUDA C Programming Guide, "CUDA Environment Variables", and the MIG user guide):

- unset: every GPU, in CUDA's order (the same as NVML's when CUDA_DEVICE_ORDER=PCI_BUS_ID, or when all GPUs
  are the same model; otherwise CUDA may order them differently and `note` says so);
- a comma-separated list of indices, or of UUIDs (`GPU-<uuid>`, any prefix that names one GPU alone), or of
  MIG devices (`MIG-<uuid>`, or `MIG-GPU-<gpu uuid>/<GPU instance>/<compute instance>`);
- the list ends at the first entry that is invalid (no such device, a negative index, a prefix naming two GPUs,
  an index among UUIDs); a device listed twice makes the whole list invalid (no device visible);
- a CUDA process sees at most one MIG device: the first MIG device listed; a listed GPU with MIG mode on stands
  for its first MIG device, and then no other GPU is visible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .nvml import NvmlSession

_INDEX = re.compile(r"[+-]?\d+")
_MIG_BY_GPU = re.compile(r"MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)")


@dataclass(frozen=True)
class NvmlDevice:
    """A GPU, or one MIG device of a GPU, as NVML addresses it."""

    nvml_index: int  # the physical GPU's index, as nvidia-smi numbers it
    uuid: str
    name: str
    handle: Any = field(compare=False, repr=False)
    mig_index: int | None = None  # the MIG device's index on its GPU; None for a whole GPU
    gpu_instance: int | None = None
    compute_instance: int | None = None

    @property
    def label(self) -> str:
        return f"GPU {self.nvml_index}" + (f" MIG {self.mig_index}" if self.mig_index is not None else "")


@dataclass(frozen=True)
class PhysicalGpu:
    device: NvmlDevice
    mig_enabled: bool
    migs: tuple[NvmlDevice, ...] = ()


@dataclass(frozen=True)
class VisibleDevices:
    devices: list[NvmlDevice]  # devices[n] is cuda:n
    note: str | None = None  # why the mapping may be off, or why it is empty


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def inventory(session: NvmlSession) -> list[PhysicalGpu] | None:
    """Every GPU NVML sees, with its MIG devices; None when NVML cannot count them. Cached for the session
    (devices and MIG layouts change only with a driver reload or a reconfiguration by root)."""
    cached = session.cache.get("inventory")
    if cached is not None:
        return list(cached)
    nvml = session.nvml
    if nvml is None or not session.start():
        return None
    count = session.optional(nvml.nvmlDeviceGetCount)
    if count is None:
        return None
    gpus: list[PhysicalGpu] = []
    for index in range(count):
        handle = session.optional(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return None  # a GPU we cannot address would shift every index after it: no mapping beats a wrong one
        uuid = _text(session.optional(nvml.nvmlDeviceGetUUID, handle) or "")
        name = _text(session.optional(nvml.nvmlDeviceGetName, handle) or "n/a")
        gpu = NvmlDevice(index, uuid, name, handle)
        mode = session.optional(nvml.nvmlDeviceGetMigMode, handle)  # NOT_SUPPORTED before Ampere
        enabled = mode is not None and bool(mode) and mode[0] == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        migs: list[NvmlDevice] = []
        if enabled:
            for slot in range(session.optional(nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
                mig = session.optional(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
                if mig is None:
                    continue  # an empty slot
                migs.append(NvmlDevice(
                    index, _text(session.optional(nvml.nvmlDeviceGetUUID, mig) or ""),
                    _text(session.optional(nvml.nvmlDeviceGetName, mig) or name), mig, mig_index=slot,
                    gpu_instance=session.optional(nvml.nvmlDeviceGetGpuInstanceId, mig),
                    compute_instance=session.optional(nvml.nvmlDeviceGetComputeInstanceId, mig)))
        gpus.append(PhysicalGpu(gpu, enabled, tuple(migs)))
    session.cache["inventory"] = tuple(gpus)
    return gpus


def _by_prefix(prefix: str, devices: list[NvmlDevice]) -> NvmlDevice | None:
    """The one device whose UUID starts with `prefix` (CUDA accepts any unambiguous prefix)."""
    found = [d for d in devices if d.uuid.lower().startswith(prefix.lower())]
    return found[0] if len(found) == 1 else None


def _resolve(token: str, gpus: list[PhysicalGpu]) -> NvmlDevice | None:
    if _INDEX.match(token):
        index = int(_INDEX.match(token).group())  # type: ignore[union-attr]  # CUDA reads the leading digits
        return gpus[index].device if 0 <= index < len(gpus) else None
    if token.startswith("MIG-GPU-") and "/" in token:
        match = _MIG_BY_GPU.fullmatch(token)
        if match is None:
            return None
        parent = _by_prefix(match.group(1), [g.device for g in gpus])
        if parent is None:
            return None
        migs = next(g.migs for g in gpus if g.device is parent)
        gi, ci = int(match.group(2)), int(match.group(3))
        return next((m for m in migs if (m.gpu_instance, m.compute_instance) == (gi, ci)), None)
    if token.startswith("MIG-"):
        return _by_prefix(token, [m for g in gpus for m in g.migs])
    if token.startswith("GPU-"):
        return _by_prefix(token, [g.device for g in gpus])
    return None


def visible_devices(gpus: list[PhysicalGpu], value: str | None, order: str | None = None) -> VisibleDevices:
    """The devices a CUDA process started with CUDA_VISIBLE_DEVICES=`value` (None: unset) and
    CUDA_DEVICE_ORDER=`order` sees, in CUDA's numbering."""
    note = None
    names = {g.device.name for g in gpus}
    if len(names) > 1 and (order or "FASTEST_FIRST").strip().upper() != "PCI_BUS_ID":
        note = ("different GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may number the GPUs "
                "differently from NVML (set CUDA_DEVICE_ORDER=PCI_BUS_ID to make the mapping exact)")
    if value is None:
        listed = [g.device for g in gpus]
    else:
        listed = []
        seen: set[tuple[int, int | None]] = set()
        by_index: bool | None = None
        for raw in value.split(","):
            token = raw.strip()
            is_index = bool(_INDEX.match(token))
            if by_index is None:
                by_index = is_index
            device = _resolve(token, gpus) if is_index == by_index else None
            if device is None:
                break  # CUDA ignores this entry and every one after it
            if (device.nvml_index, device.mig_index) in seen:
                return VisibleDevices([], f"CUDA_VISIBLE_DEVICES={value!r} names a device twice: no device is visible")
            seen.add((device.nvml_index, device.mig_index))
            listed.append(device)
    devices = _apply_mig(listed, gpus)
    if not devices and note is None:
        note = f"CUDA_VISIBLE_DEVICES={value!r} makes no device visible"
    return VisibleDevices(devices, note)


def _apply_mig(listed: list[NvmlDevice], gpus: list[PhysicalGpu]) -> list[NvmlDevice]:
    migs = [d for d in listed if d.mig_index is not None]
    if migs:
        return migs[:1]
    physical = {g.device.nvml_index: g for g in gpus}
    devices: list[NvmlDevice] = []
    for device in listed:
        gpu = physical[device.nvml_index]
        if gpu.mig_enabled:
            if gpu.migs:
                return [gpu.migs[0]]
            continue  # MIG on, no MIG device created: nothing of this GPU is usable
        devices.append(device)
    return devices
