"""The real kernel as a reference: run ops scripts on this machine and compare.

``run_host`` runs a parsed ops script through a small C runner (compiled on
first use) and returns the same observations as ``freepgt.ops.run``, so the
model and the kernel can be compared key for key; ``time_host`` times the
kernel on a script.  Both need Linux on x86_64 with 4-level page tables and
a C compiler; ``host_unavailable_reason()`` says why not when they cannot
run here.
"""

from .runner import (
    HostError,
    HostUnavailable,
    check_arena,
    check_comparable,
    host_unavailable_reason,
    run_host,
    runner_path,
    time_host,
)

__all__ = [
    "HostError",
    "HostUnavailable",
    "check_arena",
    "check_comparable",
    "host_unavailable_reason",
    "run_host",
    "runner_path",
    "time_host",
]
