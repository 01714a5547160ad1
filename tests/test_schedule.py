"""Schedules are pure functions of the step/epoch counters."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from runner.sweep.config_resolvers import equal_stages
from runner.training.schedule import Schedule, Stage, remember_initial_values


def test_increasing_batch_stages_and_steps():
    schedule = Schedule([Stage(b, 2) for b in (16, 32, 64)], train_size=100)
    assert [schedule.batch_size_at(e) for e in range(6)] == [16, 16, 32, 32, 64, 64]
    assert [schedule.stage_at(e) for e in range(6)] == [0, 0, 1, 1, 2, 2]
    # Last partial batch dropped: 100 // 16 = 6, 100 // 32 = 3, 100 // 64 = 1.
    assert [schedule.steps_in_epoch(e) for e in range(6)] == [6, 6, 3, 3, 1, 1]
    assert schedule.total_steps == 20
    assert schedule.epoch_start_step(2) == 12 and schedule.epoch_start_step(6) == schedule.total_steps


def test_cosine_and_linear_decay_to_the_floor_per_step():
    cosine = Schedule([Stage(10, 10)], 100, lr_policy="cosine", min_lr_ratio=0.01)
    linear = Schedule([Stage(10, 10)], 100, lr_policy="linear", min_lr_ratio=0.01)
    last = cosine.total_steps - 1
    assert cosine.lr_factor(0) == 1.0 and cosine.lr_factor(last) == pytest.approx(0.01)
    middle = last // 2
    assert cosine.lr_factor(middle) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * middle / last)))
    assert linear.lr_factor(last) == pytest.approx(0.01)
    assert linear.lr_factor(50) == pytest.approx(1 - 0.99 * 50 / last)
    factors = [cosine.lr_factor(s) for s in range(cosine.total_steps)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def sam_like_optimizer(rho: float = 0.05) -> torch.optim.Optimizer:
    """Two param groups with their own lr and a `rho` each, as the SAM optimizers hold them."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    for group in optimizer.param_groups:
        group["rho"] = rho
    remember_initial_values(optimizer)
    return optimizer


def test_warmup_then_policy_and_rho_following_lr():
    schedule = Schedule(
        [Stage(10, 10)], 100, lr_policy="cosine", warmup_epochs=2, warmup_start_ratio=0.01, rho_follows_lr=True
    )
    assert schedule.warmup_steps == 20
    assert schedule.lr_factor(0) == pytest.approx(0.01)
    assert schedule.lr_factor(10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert schedule.lr_factor(20) == 1.0
    optimizer = sam_like_optimizer()
    schedule.apply(optimizer, 10)
    assert [g["rho"] for g in optimizer.param_groups] == pytest.approx([0.05 * schedule.lr_factor(10)] * 2)
    constant_rho = Schedule([Stage(10, 10)], 100, lr_policy="cosine")
    optimizer = sam_like_optimizer()
    constant_rho.apply(optimizer, 50)
    assert [g["rho"] for g in optimizer.param_groups] == [0.05, 0.05]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [0.1 * constant_rho.lr_factor(50), 0.01 * constant_rho.lr_factor(50)]
    )


def test_apply_scales_each_group_from_its_initial_values():
    optimizer = sam_like_optimizer()
    schedule = Schedule([Stage(10, 10)], 100, lr_policy="linear", min_lr_ratio=0.0, rho_follows_lr=True)
    schedule.apply(optimizer, schedule.total_steps - 1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.0, 0.0]
    schedule.apply(optimizer, 0)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    assert [g["rho"] for g in optimizer.param_groups] == [0.05, 0.05]


def test_from_config_reads_every_value_from_the_option():
    option = {
        "stages": [{"batch_size": 10, "epochs": 4}],
        "lr_policy": "linear",
        "min_lr_ratio": 0.5,
        "warmup_epochs": 1,
        "warmup_start_ratio": 0.25,
        "rho_follows_lr": True,
    }
    built = Schedule.from_config(option, train_size=100)
    read = (built.lr_policy, built.min_lr_ratio, built.warmup_steps, built.warmup_start_ratio, built.rho_follows_lr)
    assert read == ("linear", 0.5, 10, 0.25, True)
    assert built.lr_factor(0) == 0.25 and built.lr_factor(built.total_steps - 1) == pytest.approx(0.5)
    with pytest.raises(KeyError, match="rho_follows_lr"):  # no second copy of the YAML's defaults here
        Schedule.from_config({k: v for k, v in option.items() if k != "rho_follows_lr"}, train_size=100)


def test_equal_stages_split_the_epochs():
    sizes = [16, 32, 64, 128, 256]
    assert OmegaConf.to_container(equal_stages(sizes, 200)) == [{"batch_size": b, "epochs": 40} for b in sizes]
    assert [s["epochs"] for s in equal_stages([1, 2, 3], 7)] == [2, 2, 3]
    with pytest.raises(ValueError, match="fewer than"):
        equal_stages([1, 2, 3], 2)
