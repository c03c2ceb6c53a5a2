"""How training adapts to the machine: thread counts beside busy processes, quiet Lightning."""

import logging
import sys

import pytest
import torch

from scvi_diffusion.train import _runtime
from scvi_diffusion.train._runtime import quiet_lightning, threads_for_idle_cores, training_threads


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


def test_threads_are_restored_after_the_block(monkeypatch):
    monkeypatch.setattr(_runtime, "idle_cores", lambda: 0.0)
    before = torch.get_num_threads()
    with threads_for_idle_cores() as threads:
        assert threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads_for_idle_cores():
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_quiet_lightning_hides_info_and_restores_the_levels(caplog):
    lightning = logging.getLogger("lightning.pytorch")
    before = lightning.level
    with quiet_lightning():
        assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(
            logging.INFO
        )
        assert logging.getLogger("lightning.pytorch").isEnabledFor(logging.WARNING)
    assert lightning.level == before
