"""fork: the model's ``dup_mmap`` (kernel/fork.c, mm/mmap.c)."""

from __future__ import annotations

from ..vma import VM_DONTCOPY, AnonVma
from .core import MM


def dup_mmap(parent: MM) -> MM:
    """The child's mm: every vma but VM_DONTCOPY, page tables where the era copies them.

    ``copy_page_range`` gives the child a table wherever the parent has one
    over a copied vma (empty tables included) and the ptes in it.  A copied
    vma with an anon_vma gets a new one of its own (``anon_vma_fork``), or
    in eras before it shares the parent's (``anon_vma_link``).
    """
    parent.check_alive()
    child = MM(parent.era, parent.geom)
    child.start_brk = parent.start_brk
    child.brk = parent.brk
    child.mmap_base = parent.mmap_base
    child.max_map_count = parent.max_map_count
    child.committed = parent.committed
    anon_map: dict[int, AnonVma] = {}
    for vma in parent.vmas.all():
        if vma.vm_flags & VM_DONTCOPY:
            continue
        new = vma.clone()
        if vma.anon_vma is not None and not parent.era.fork_shares_anon_vma:
            # anon_vma_fork: the child gets one of its own, chained to the parent's
            new.anon_vma = anon_map.setdefault(vma.anon_vma.id, AnonVma())
        child.vmas.insert(new)
        if parent.era.fork_copies(vma):
            for name, n in parent.pt.copy_range(child.pt, vma.vm_start, vma.vm_end).items():
                child.nr_tables[name] += n
                child.stats["tables_allocated"] += n
    return child
