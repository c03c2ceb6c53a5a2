"""How training runs on the user's machine: what Lightning may print, and how many threads."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings

import torch

# Lightning's loggers of hardware banners ("GPU available: ..."), tips and "`Trainer.fit`
# stopped" lines; their warnings still show
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")

# warnings that say nothing a user can act on while a stage trains
QUIET_WARNINGS = (
    # loader processes would only slow down minibatches that are slices of tensors
    ".*does not have many workers.*",
    # scvi-tools' Trainer skips validation unless asked for
    ".*validation_step.*but have no val_dataloader.*",
    # the loss is logged once per epoch, not every few steps
    ".*smaller than the logging interval.*",
    # raised inside Lightning with newer torch releases
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    # a notebook without ipywidgets: the progress bars fall back to text, which is fine
    ".*IProgress not found.*",
)


@contextlib.contextmanager
def quiet_lightning():
    """Show only Lightning's warnings and errors for the duration of a block.

    A training stage shows its progress bar and nothing else: no hardware banner, no logger
    tips, no "`Trainer.fit` stopped" line. The loggers' levels are restored afterwards.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [log.level for log in loggers]
    try:
        for log in loggers:
            log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
        with warnings.catch_warnings():
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


PROC_STAT = "/proc/stat"
IDLE_SAMPLE_SECONDS = 0.2


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """Idle and total time (in clock ticks) of ``cpus``, summed, from ``/proc/stat``."""
    idle = total = 0
    with open(PROC_STAT) as stat:
        for line in stat:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            if int(name[3:]) in cpus:
                # user nice system idle iowait irq softirq steal (guest time is in user)
                ticks = [int(value) for value in fields[:8]]
                idle += ticks[3] + ticks[4]
                total += sum(ticks)
    return idle, total


def training_threads(current: int, idle: float | None) -> int:
    """Torch threads for a training stage: at most ``current``, and no more than the idle
    cores (rounded), at least one.

    Torch splits every operation between its threads and waits for the slowest: a thread that
    shares its core with a busy process stalls every operation for the time slices it does not
    get, which made a 2-thread training several times slower beside one busy process on 2
    cores. One thread fewer costs a little when the cores would have been free.
    """
    if idle is None:
        return current
    return max(1, min(current, math.floor(idle + 0.5)))


class LoadMeter:
    """How many of this process's cores other processes used since the last reading.

    Busy time of the cores (``/proc/stat``) less this process's own CPU time, over the wall
    time between readings: nothing is slept, so a training can read it between its steps.
    """

    def __init__(self):
        self.cpus = os.sched_getaffinity(0)
        self.ticks_per_second = os.sysconf("SC_CLK_TCK")
        self._last = self._read()

    def _read(self) -> tuple[int, int, float]:
        idle, total = _cpu_times(self.cpus)
        return idle, total, time.process_time()

    def others(self) -> float | None:
        """Cores used by other processes since the last call (or since creation)."""
        (idle_0, total_0, own_0), now = self._last, self._read()
        self._last = now
        idle_1, total_1, own_1 = now
        elapsed = total_1 - total_0  # clock ticks summed over the cores
        if elapsed <= 0:
            return None
        busy = elapsed - (idle_1 - idle_0)
        own = (own_1 - own_0) * self.ticks_per_second
        return len(self.cpus) * max(0.0, busy - own) / elapsed


def load_meter() -> LoadMeter | None:
    """A :class:`LoadMeter`, or None where ``/proc/stat`` or CPU affinity is not available."""
    try:
        meter = LoadMeter()
        meter.others()
    except (AttributeError, OSError, ValueError):
        return None
    return meter


def idle_cores(seconds: float = IDLE_SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores other processes leave idle, measured over ``seconds``.

    A :class:`LoadMeter` read once after ``seconds`` of waiting (Linux); None where that is not
    available.
    """
    meter = load_meter()
    if meter is None:
        return None
    time.sleep(seconds)
    others = meter.others()
    return None if others is None else len(meter.cpus) - others


def set_torch_threads(threads: int) -> None:
    """Use ``threads`` torch threads, calling torch only if that changes the setting.

    Each ``torch.set_num_threads`` call, even with the current value, can stall every small
    operation for seconds afterwards: on a 2-core machine (torch 2.13, OpenMP), a cosine of
    512 numbers took 12 ms instead of 3 us for about 5 s after ``set_num_threads(2)``, so
    sampling right after a training stage that had set and restored its threads crawled.
    """
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


@contextlib.contextmanager
def threads_for_idle_cores(follow: bool = True):
    """Run a block with :func:`training_threads` torch threads, then restore the setting.

    Without ``follow`` (or with one thread, where there is nothing to follow) the idle cores
    are not measured and the block keeps the current setting.
    """
    current = torch.get_num_threads()
    threads = current if current == 1 or not follow else training_threads(current, idle_cores())
    try:
        set_torch_threads(threads)
        yield threads
    finally:
        set_torch_threads(current)
