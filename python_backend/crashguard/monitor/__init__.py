"""Memory readings (RAM, swap, cgroup limit, GPUs, processes). Plain Python; never imports torch."""

from .cgroup import CgroupMemory, read_cgroup_memory
from .cuda_devices import NvmlDevice, VisibleDevices
from .gpu import GPUMonitor, GpuProcess, GpuReading
from .host import MemoryMonitor, RamReading, read_ram
from .processes import DetailedMemory, ProcessMemory, TreeMemory, detailed_memory, top_processes, tree_rss
from .thresholds import MemoryStatus, Thresholds

__all__ = [
    "CgroupMemory", "DetailedMemory", "GPUMonitor", "GpuProcess", "GpuReading", "MemoryMonitor", "MemoryStatus",
    "NvmlDevice", "ProcessMemory", "RamReading", "Thresholds", "TreeMemory", "VisibleDevices", "detailed_memory",
    "read_cgroup_memory", "read_ram", "top_processes", "tree_rss",
]
