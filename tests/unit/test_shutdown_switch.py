"""The stop switch a pool process flips at its worker's shutdown bound (``jobengine.stopping``)."""

from __future__ import annotations

import pytest

from jobengine.stopping import STOPPED_REASON, StopSwitch, WorkerStopping


def test_stopping_raises_into_the_handler_that_runs() -> None:
    switch = StopSwitch()
    with pytest.raises(WorkerStopping, match=STOPPED_REASON), switch.handler_running():
        switch.stop()
    assert switch.stopped


def test_stopping_between_handlers_only_sets_the_flag_and_no_handler_starts_after_it() -> None:
    switch = StopSwitch()
    switch.stop()  # no handler runs: nothing is raised here, in the signal handler
    started = False
    with pytest.raises(WorkerStopping), switch.handler_running():
        started = True
    assert not started


def test_a_handler_that_swallowed_the_stop_is_not_interrupted_again() -> None:
    switch = StopSwitch()
    with switch.handler_running():
        with pytest.raises(WorkerStopping):
            switch.stop()
        switch.stop()  # a second signal finds no handler to interrupt


def test_the_stop_is_not_an_exception_a_handler_catches_as_its_own_failure() -> None:
    assert not issubclass(WorkerStopping, Exception)
