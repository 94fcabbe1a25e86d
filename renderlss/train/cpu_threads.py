"""How many torch CPU threads a process should use.

torch's default is one thread per physical core of the machine. That is the fastest choice
only on an idle machine for a single process: a run restricted to fewer cores (taskset,
a container's cpuset), data-loader workers, other ranks of the same node or any other busy
process make its threads wait for each other at every parallel region, and a step can take
twenty times longer (measured: 0.44 s per step alone, about 10 s when another process took
one of two cores, 0.7-0.9 s with one thread). The choice here gives each process its share
of the cores it may run on. Data-loader workers get no cores of their own: they sleep most
of a CPU step (measured on two cores, demo config: a sample takes 0.09 s to load, a step
0.4-0.75 s), and one more compute thread paid more than they cost (2.4-2.9 samples/s with
two threads and two workers against 1.8-1.9 with one thread).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TOPOLOGY = Path("/sys/devices/system/cpu")


def choose_threads(
    requested: int,
    omp_num_threads: str | None,
    usable_cores: int,
    local_world_size: int,
) -> int:
    """Torch CPU threads for one process.

    Args:
        requested: an explicit count (``train.threads``); 0 chooses.
        omp_num_threads: the ``OMP_NUM_THREADS`` environment variable, None when unset; a
            positive integer there is the user's choice and is honoured.
        usable_cores: physical cores this process may run on (its CPU affinity).
        local_world_size: processes of the run on this machine sharing those cores.

    Returns:
        ``requested`` if > 0, else ``OMP_NUM_THREADS`` if it is a positive integer, else
        ``usable_cores // local_world_size``; at least 1.
    """
    if requested > 0:
        return requested
    if omp_num_threads is not None and omp_num_threads.strip().isdigit():
        if int(omp_num_threads) > 0:  # "0" is no choice: torch would pick its default
            return int(omp_num_threads)
    return max(1, usable_cores // max(1, local_world_size))


def physical_cores(cpus: Iterable[int], topology: Path = _TOPOLOGY) -> int:
    """Distinct physical cores among the logical CPUs ``cpus`` (hyper-threads of one core
    count once), from Linux's sysfs topology; the number of CPUs where it is not readable."""
    cpus = list(cpus)
    cores = set()
    for cpu in cpus:
        folder = topology / f"cpu{cpu}" / "topology"
        try:
            package = (folder / "physical_package_id").read_text().strip()
            core = (folder / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores)


def usable_physical_cores() -> int:
    """Physical cores this process may run on (its scheduler affinity)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:
        cpus = list(range(os.cpu_count() or 1))
    return max(1, physical_cores(cpus))
