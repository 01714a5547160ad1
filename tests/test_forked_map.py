"""A function mapped in forked children: the results of a plain loop, in order, whatever a child does."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import json_of_a_fresh_process, launch

from runner.sweep.forked_map import forked_map
from runner.sweep.sweeper import planning_processes

PARENT = os.getpid()


def square_and_pid(item: int) -> tuple[int, int]:
    """item squared, and which process computed it; item 5 ends its child abruptly, item 7 raises there."""
    if os.getpid() != PARENT and item == 5:
        os._exit(3)  # a child killed mid-share: its share is computed again by the parent
    if os.getpid() != PARENT and item == 7:
        raise ValueError("only in a child")
    return item * item, os.getpid()


def map_in_a_fresh_process(processes: int) -> dict:
    """forked_map in a process of its own, with no thread but its main one (pytest's workers have more)."""
    return json_of_a_fresh_process(
        "import json, sys; sys.path.insert(0, 'tests'); import test_forked_map as t; "
        "from runner.sweep.forked_map import forked_map; t.PARENT = __import__('os').getpid(); "
        f"out = forked_map(t.square_and_pid, list(range(12)), {processes}); "
        "print(json.dumps({'parent': t.PARENT, 'out': out}))"
    )


def test_children_compute_in_order_and_a_failed_share_is_computed_again_here():
    found = map_in_a_fresh_process(processes=3)
    squares = [square for square, _ in found["out"]]
    assert squares == [k * k for k in range(12)]
    by_pid = {k: pid for k, (_, pid) in enumerate(found["out"])}
    children = {pid for pid in by_pid.values() if pid != found["parent"]}
    assert len(children) == 2, by_pid  # three shares: 0,3,6,9 / 1,4,7,10 / 2,5,8,11; the third child died
    assert {k for k, pid in by_pid.items() if pid == found["parent"]} == {2, 5, 8, 11, 7}


def test_one_process_or_other_threads_run_everything_here():
    alone = map_in_a_fresh_process(processes=1)
    assert {pid for _, pid in alone["out"]} == {alone["parent"]}
    started = threading.Event()
    waiting = threading.Thread(target=started.wait, daemon=True)
    waiting.start()  # another thread: a fork would copy only this one, so nothing forks
    try:
        assert forked_map(square_and_pid, [1, 2, 3, 4], 2) == [(k * k, os.getpid()) for k in (1, 2, 3, 4)]
    finally:
        started.set()


def sleep_in_a_child(folder: str) -> None:
    """Note which process runs this; a child then sleeps long past the test."""
    with open(f"{folder}/pids", "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    if os.getpid() != PARENT:
        time.sleep(120)


def test_ctrl_c_of_the_caller_leaves_no_child(tmp_path):
    found = json_of_a_fresh_process(
        "import json, os, signal, sys, time; sys.path.insert(0, 'tests'); import test_forked_map as t; "
        "from runner.sweep.forked_map import forked_map; t.PARENT = os.getpid(); "
        "signal.signal(signal.SIGALRM, signal.default_int_handler); signal.alarm(3)\n"
        f"try:\n    forked_map(t.sleep_in_a_child, [{str(tmp_path)!r}] * 4, 2); ended = 'returned'\n"
        "except KeyboardInterrupt:\n    ended = 'interrupted'\n"
        f"pids = [int(p) for p in open({str(tmp_path / 'pids')!r}).read().split()]\n"
        "def alive(pid):\n    try:\n        os.kill(pid, 0)\n        return True\n"
        "    except ProcessLookupError:\n        return False\n"
        "print(json.dumps({'ended': ended, 'pids': pids, 'alive': [p for p in pids if alive(p)]}))"
    )
    assert found["ended"] == "interrupted"
    assert len(found["pids"]) == 2 and found["alive"] == [], found  # both children started, none left


def test_an_error_raises_in_the_caller_as_in_a_loop():
    def fails(item: int) -> int:
        raise KeyError(item)

    with pytest.raises(KeyError):
        forked_map(fails, [1, 2], 2)


@pytest.mark.parametrize(
    "setting, cells, expected",
    [("auto", 3, 1), (1, 40, 1), (3, 40, 3), (0, 40, None), ("two", 40, None), (True, 40, None)],
)
def test_planning_processes(setting, cells, expected):
    assert planning_processes(setting, cells) == expected


def test_a_sweep_planned_in_several_processes_reports_what_one_process_reports(tmp_path):
    """The same error lines in the same order, and the same count of bad cells."""
    grid = ["-m", "optimizer=sgd,sam,gsam", "schedule=constant,batch", "sam.rho=0.05,-1", "model.width=4"]
    runs = {n: launch([*grid, f"hydra.sweeper.plan_processes={n}", f"results_root={tmp_path}"]) for n in (1, 3)}
    for run in runs.values():
        assert run.returncode == 2, run.stderr
    errors = {n: [line for line in run.stderr.splitlines() if line.startswith("error:")] for n, run in runs.items()}
    assert errors[1] == errors[3]
    assert len(errors[1]) == 7 and "in 6 of 12 cells" in errors[1][-1], errors[1]  # every rho=-1 cell
    bad = launch([*grid, "hydra.sweeper.plan_processes=0", f"results_root={tmp_path / 'bad'}"])
    assert bad.returncode == 2 and "hydra.sweeper.plan_processes=0" in bad.stderr, bad.stderr
