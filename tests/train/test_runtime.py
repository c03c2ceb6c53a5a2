"""How training adapts to the machine: thread counts beside busy processes, quiet Lightning."""

import logging
import os
import pickle
import subprocess
import sys
import time

import pytest
import torch

from scvi_diffusion.train import _callbacks, _runtime
from scvi_diffusion.train._callbacks import ThreadsFollowLoad
from scvi_diffusion.train._runtime import (
    quiet_lightning,
    set_torch_threads,
    threads_for_idle_cores,
    training_threads,
)
from scvi_diffusion.train._stage_runner import follows_load, stage_callbacks


@pytest.fixture
def fake_threads(monkeypatch):
    """torch's thread setting as a plain number, starting at 2, with every ``set_num_threads``
    call recorded: a real call to 2 threads stalls small operations for seconds, and tests run
    on one thread."""
    state = {"threads": 2, "calls": []}

    def set_threads(threads):
        state["calls"].append(threads)
        state["threads"] = threads

    monkeypatch.setattr(torch, "get_num_threads", lambda: state["threads"])
    monkeypatch.setattr(torch, "set_num_threads", set_threads)
    return state


@pytest.mark.parametrize(
    ("current", "idle", "expected"),
    [
        (2, 2.0, 2),  # an idle machine: torch's setting
        (2, 1.9, 2),  # background noise is not a busy core
        (2, 1.0, 1),  # one busy process on two cores: one thread
        (2, 0.2, 1),  # never fewer than one
        (8, 5.6, 6),
        (2, 8.0, 2),  # never more than torch's setting
        (4, None, 4),  # not measurable (no /proc/stat): torch's setting
    ],
)
def test_training_threads(current, idle, expected):
    assert training_threads(current, idle) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_idle_cores_is_measured_on_linux():
    idle = _runtime.idle_cores(seconds=0.05)
    assert idle is not None
    assert 0.0 <= idle <= len(_runtime.os.sched_getaffinity(0)) + 1e-9


def test_idle_cores_without_proc_stat(monkeypatch, tmp_path):
    monkeypatch.setattr(_runtime, "PROC_STAT", str(tmp_path / "missing"))
    assert _runtime.idle_cores(seconds=0.0) is None


def test_threads_are_restored_after_the_block(monkeypatch, fake_threads):
    monkeypatch.setattr(_runtime, "idle_cores", lambda: 0.0)
    with threads_for_idle_cores() as threads:
        assert threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), threads_for_idle_cores():
        raise RuntimeError
    assert torch.get_num_threads() == 2
    assert fake_threads["calls"] == [1, 2, 1, 2]


def test_an_unchanged_thread_count_is_never_set(monkeypatch, fake_threads):
    """torch.set_num_threads, even to the current value, stalls small operations for seconds
    on some machines: an idle machine's stage leaves the setting alone."""
    monkeypatch.setattr(_runtime, "idle_cores", lambda: 2.0)
    with threads_for_idle_cores() as threads:
        assert threads == 2
    set_torch_threads(2)
    assert fake_threads["calls"] == []
    set_torch_threads(1)
    assert fake_threads["calls"] == [1]


def test_one_thread_or_determinism_keeps_the_setting_unmeasured(monkeypatch, fake_threads):
    """With one thread nothing can follow the load, and where bit-identical results are asked
    for the stage keeps its threads: the idle cores are not even measured."""

    def measured():
        raise AssertionError("the idle cores were measured")

    monkeypatch.setattr(_runtime, "idle_cores", measured)
    with threads_for_idle_cores(follow=False) as threads:
        assert threads == 2
    fake_threads["threads"] = 1
    with threads_for_idle_cores() as threads:
        assert threads == 1
    assert fake_threads["calls"] == []


def test_a_deterministic_stage_does_not_follow_the_load():
    assert follows_load({}) and follows_load({"deterministic": False})
    assert not follows_load({"deterministic": True})
    followers = [
        type(callback).__name__
        for follow in (True, False)
        for callback in stage_callbacks([], "diffusion", follow, False, 10)
    ]
    assert followers.count("ThreadsFollowLoad") == 1
    torch.use_deterministic_algorithms(True)
    try:
        assert not follows_load({})
    finally:
        torch.use_deterministic_algorithms(False)


def test_quiet_lightning_hides_info_and_restores_the_levels(caplog):
    lightning = logging.getLogger("lightning.pytorch")
    before = lightning.level
    with quiet_lightning():
        assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(
            logging.INFO
        )
        assert logging.getLogger("lightning.pytorch").isEnabledFor(logging.WARNING)
    assert lightning.level == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
@pytest.mark.skipif(
    sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) < 2,
    reason="needs a core for the busy process and one for this one",
)
def test_load_meter_counts_other_processes_not_this_one():
    meter = _runtime.load_meter()
    assert meter is not None
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        meter.others()
        # this process keeps a core busy too: it is not counted as another process's load
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            pass
        others = meter.others()
    finally:
        busy.kill()
        busy.wait()
    assert others is not None
    # at least the busy process (other jobs on the machine may add to it)
    assert others >= 0.7, others


class _FakeMeter:
    def __init__(self, loads, cores=2):
        self.cpus = set(range(cores))
        self.loads = list(loads)

    def others(self):
        return self.loads.pop(0)


def test_threads_follow_the_load_during_a_stage(monkeypatch, fake_threads):
    """A process that starts mid-stage takes a thread away; when it ends, it comes back."""
    callback = ThreadsFollowLoad(max_threads=2, interval=0.0)
    meter = _FakeMeter([0.0, 1.0, 1.1, None, 0.1, 0.2, 1.4, 0.3, 3.0, 2.5])
    monkeypatch.setattr(_callbacks, "load_meter", lambda: meter)
    seen = []
    callback.on_train_start(None, None)
    for _ in range(10):
        callback.on_train_batch_end(None, None, None, None, 0)
        seen.append(torch.get_num_threads())
    # idle; a busy process, confirmed by the next check; not measurable (kept); idle again,
    # confirmed; a spike of one check (ignored); overloaded, confirmed
    assert seen == [2, 2, 1, 1, 1, 2, 2, 2, 2, 1]
    assert fake_threads["calls"] == [1, 2, 1]  # only the changes reach torch


def test_threads_follow_the_load_only_on_one_cpu_process(monkeypatch):
    """Distributed or GPU training: no meter, no change."""
    monkeypatch.setattr(_callbacks, "load_meter", lambda: _FakeMeter([2.0, 2.0]))

    class Trainer:
        world_size = 2
        accelerator = _callbacks.CPUAccelerator()

    callback = ThreadsFollowLoad(max_threads=2, interval=0.0)
    callback.on_train_start(Trainer(), None)
    assert callback._meter is None
    Trainer.world_size = 1
    callback.on_train_start(Trainer(), None)
    assert callback._meter is not None
    Trainer.accelerator = object()
    callback.on_train_start(Trainer(), None)
    assert callback._meter is None
    # one thread cannot be reduced
    single = ThreadsFollowLoad(max_threads=1)
    single.on_train_start(None, None)
    assert single._meter is None


def test_threads_follow_the_load_only_every_interval(monkeypatch):
    callback = ThreadsFollowLoad(max_threads=2, interval=3600.0)
    meter = _FakeMeter([2.0])
    monkeypatch.setattr(_callbacks, "load_meter", lambda: meter)
    before = torch.get_num_threads()
    callback.on_train_start(None, None)
    callback.on_train_batch_end(None, None, None, None, 0)
    assert torch.get_num_threads() == before
    assert meter.loads == [2.0]
    # pickled into spawned processes without the meter
    assert pickle.loads(pickle.dumps(callback))._meter is None
