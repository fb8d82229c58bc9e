"""freepgt: an executable model of Linux page-table lifetime.

The address space of one process (vmas, mmap, munmap, mprotect, mremap,
madvise, brk, faults, fork, exec, exit), its multi-level page-table tree on
several architectures' geometries, and the code that frees page tables, in
the kernel eras before and after the 2.6.12 patch "freepgt: free_pgtables
use vma list".
"""

from .arch import PRESETS, Geometry, get_arch
from .eras import DEFAULT_ERA, era_names, get_era
from .errors import BusError, KernelBug, SegmentationFault, Signal
from .process import Image, Process, Segment

__all__ = [
    "PRESETS", "Geometry", "get_arch", "DEFAULT_ERA", "era_names", "get_era",
    "BusError", "KernelBug", "SegmentationFault", "Signal", "Image", "Process", "Segment",
]
__version__ = "0.1.0"
