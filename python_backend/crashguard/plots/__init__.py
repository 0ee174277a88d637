"""Memory-safe plots: the memory timeline, training curves and segmentation overlays, written as PNG files.

Always the Agg backend (no display, no GUI event loop) and every figure closed in a `finally`, so plotting in a
long training process never accumulates figures. Importing this package does not import matplotlib; each
function does, when called.
"""

from .curves import plot_training_curves
from .overlay import plot_segmentation_overlay
from .timeline import MemoryPoint, TimelineEvent, plot_memory_timeline

__all__ = ["MemoryPoint", "TimelineEvent", "plot_memory_timeline", "plot_segmentation_overlay",
           "plot_training_curves"]
