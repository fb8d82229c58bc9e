"""ARM's first PMD: the vectors page that freepgt2 protected with FIRST_USER_ADDRESS.

Run: ``python examples/arm_first_pmd.py``.  See examples/README.md.
"""

from __future__ import annotations

from freepgt import KernelBug, Process

ERAS = ("linux-2.6.11", "linux-2.6.12-rc", "linux-2.6.12")


def run_one(era: str, text: int) -> dict:
    """A one-page text vma at ``text``, written, munmapped, then exit.

    ARM's pgd allocation creates the PTE page for [0, 2 MiB), where the
    machine vectors live when they are low; nr_ptes starts at 1.
    """
    p = Process(era=era, arch="arm")
    start = p.nr_ptes
    p.mmap(text, 0x1000, "rw-", "private,anon,fixed")
    p.touch(text, 0x1000, "w")
    p.munmap(text, 0x1000)
    after = p.nr_ptes
    try:
        p.exit()
        verdict = "exit clean"
    except KernelBug as e:
        verdict = str(e)
    return {"era": era, "text": text, "nr_ptes_at_start": start, "nr_ptes_after_munmap": after,
            "exit": verdict}


def main() -> list[dict]:
    rows = [run_one(era, text) for text in (0x8000, 0x400000) for era in ERAS]
    for r in rows:
        print(f"{r['era']:<16} text at {r['text']:#8x}: nr_ptes {r['nr_ptes_at_start']} at start, "
              f"{r['nr_ptes_after_munmap']} after munmap; {r['exit']}")
    return rows


if __name__ == "__main__":
    main()
