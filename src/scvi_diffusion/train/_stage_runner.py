"""Running one training stage with scvi-tools' TrainRunner: one progress bar, nothing noisy,
a clear error when the loss diverges, and Ctrl+C that stays Ctrl+C."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

import torch

from ._callbacks import StageProgressBar, StopOnNonFiniteLoss, ThreadsFollowLoad
from ._errors import NonFiniteLossError
from ._runtime import quiet_lightning, threads_for_idle_cores
from ._stages import all_finite

logger = logging.getLogger("scvi").getChild("diffusion")


def follows_load(runner_kwargs: dict) -> bool:
    """Whether a stage's threads follow the machine's load: not where bit-identical results
    are asked for (Lightning's ``deterministic``, or torch's deterministic algorithms), since
    the results depend on the thread count, which the follower changes."""
    deterministic = runner_kwargs.get("deterministic")
    return not (deterministic or torch.are_deterministic_algorithms_enabled())


def stage_callbacks(
    callbacks: Sequence, stage: str, follow: bool, progress_bar: bool, max_steps: int | None
) -> list:
    """The stage's callbacks: the caller's, the non-finite-loss stop, the load follower and
    the stage's progress bar (in steps for a step budget)."""
    # scvi-tools' Trainer appends its own callbacks to the list it gets: a fresh list per
    # stage keeps the caller's list, and the next stage's, untouched
    callbacks = [*callbacks, StopOnNonFiniteLoss(stage)]
    if follow:
        callbacks.append(ThreadsFollowLoad(torch.get_num_threads()))
    if progress_bar:
        callbacks.append(StageProgressBar(stage, "epoch" if max_steps is None else "step"))
    return callbacks


def run_stage(
    runner_cls,
    host,
    stage: str,
    training_plan,
    data_splitter,
    max_epochs: int,
    callbacks: Sequence = (),
    max_steps: int | None = None,
    progress_bar: bool = True,
    **runner_kwargs,
) -> dict:
    """Train one stage; return its history under the stage prefix.

    ``host`` is what the runner trains and records the history on: the model, or a
    :class:`~scvi_diffusion.train._stages.ModuleHost` for a module trained apart from it.
    ``max_steps`` (the latent stages) makes the stage a step budget, shown by its progress bar
    in steps. A NaN or infinite loss stops the stage with a :class:`NonFiniteLossError`; a
    Ctrl+C raises KeyboardInterrupt (Lightning turns it into SystemExit and leaves Ctrl+C
    ignored, which would disable it in the rest of a Jupyter session).
    """
    budget = f"{max_steps} steps" if max_steps is not None else f"{max_epochs} epochs"
    logger.debug(f"ScDiffusion training stage '{stage}': {budget}.")
    host.is_trained_ = False
    host.history_ = None
    # scvi-tools' runner leaves the module in eval mode after a stage; Lightning keeps it so
    training_plan.module.train()
    follow = follows_load(runner_kwargs)
    callbacks = stage_callbacks(callbacks, stage, follow, progress_bar, max_steps)
    if max_steps is not None:
        runner_kwargs["max_steps"] = max_steps
    runner_kwargs.pop("simple_progress_bar", None)
    in_main_thread = threading.current_thread() is threading.main_thread()
    sigint_handler = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        with quiet_lightning(), threads_for_idle_cores(follow) as threads:
            logger.debug(f"Stage '{stage}' runs with {threads} torch threads.")
            runner = runner_cls(
                host,
                training_plan=training_plan,
                data_splitter=data_splitter,
                max_epochs=max_epochs,
                callbacks=callbacks,
                enable_progress_bar=progress_bar,
                # the stage's own bar (above) instead of scvi-tools' bar over epochs
                simple_progress_bar=False,
                **runner_kwargs,
            )
            runner()
    except SystemExit as error:
        if isinstance(error.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt(f"Training interrupted in stage {stage!r}.") from None
        raise
    except NonFiniteLossError:
        raise
    except Exception as error:
        if not all_finite(training_plan.module):
            raise NonFiniteLossError(stage, "the weights") from error
        raise
    finally:
        if in_main_thread and sigint_handler is not None:
            signal.signal(signal.SIGINT, sigint_handler)
    return {f"{stage}_{key}": value for key, value in (host.history_ or {}).items()}
