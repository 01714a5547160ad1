"""A cell ready to train: everything its config asks for, built in one place and in a fixed order.

`build_cell` seeds the process and then builds the model, its training wrappers
(DDP, torch.compile), the optimizer, the schedule, the data pipelines, the loss
and the loss scaler, always in the same order, so the model's initial weights
(drawn from the freshly seeded RNG) are the same in every run of the cell. The
epoch loop (`runner.training.epochs`) and the end of the run (`runner.training.run`) only use what
the returned `Cell` holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from runner.data.loader import examples_per_epoch
from runner.models import build_model
from runner.training import debug
from runner.training.distributed import DistContext
from runner.training.pipeline import Batches, Pipelines, build_pipelines
from runner.training.schedule import Schedule, remember_initial_values
from runner.training.steps import EpochSums, evaluate, full_gradient_norm, train_steps

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Cell:
    """The model, how to optimize it and on what data: the state a run trains and checkpoints.

    `model` is the bare module (evaluated, checkpointed, measured); `train_model`
    is what the training step calls, the same module wrapped by DDP and/or
    torch.compile when the config asks for them.
    """

    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    pipes: Pipelines
    loss_fn: LossFn
    grad_scaler: torch.amp.GradScaler | None
    precision: str
    device: torch.device
    channels_last: bool
    check_every: int

    def train(self, epoch: int, sums: EpochSums, stop: Callable[[], bool] | None = None) -> bool:
        """Continue `epoch` from the batch `sums` has reached; False when `stop()` ended it early."""
        batches = self.pipes.train_batches(epoch, self.schedule.batch_size_at(epoch), start_batch=sums.steps)
        return train_steps(
            self.train_model,
            self.optimizer,
            batches,
            sums,
            schedule=self.schedule,
            first_step=self.schedule.epoch_start_step(epoch),
            loss_fn=self.loss_fn,
            precision=self.precision,
            device=self.device,
            channels_last=self.channels_last,
            batch_transform=self.pipes.batch_transform,
            check_every=self.check_every,
            grad_scaler=self.grad_scaler,
            stop=stop,
        )

    def evaluate(self) -> tuple[float, float]:
        """(test loss, test error %) of the model as it is now."""
        return evaluate(
            self.model,
            self.pipes.test(),
            precision=self.precision,
            device=self.device,
            channels_last=self.channels_last,
        )

    def grad_norm(self) -> float | None:
        """The full-batch gradient norm on the fixed training subset; None when the config turns it off."""
        batches: Batches | None = self.pipes.grad_norm_batches()
        return None if batches is None else full_gradient_norm(self.model, batches, device=self.device)


def build_optimizer(optimizer_cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer config's SAM/GSAM over its base optimizer, with lr from `optimizer.lr`."""
    import hydra.utils

    settings = OmegaConf.to_container(optimizer_cfg, resolve=True)
    base = settings.pop("base")
    settings.pop("name")
    lr = settings.pop("lr")
    base_factory = hydra.utils.instantiate(base, lr=lr)
    return hydra.utils.instantiate(settings, model.parameters(), base_optimizer=base_factory, model=model)


def build_cell(cfg: DictConfig, dist: DistContext, precision: str) -> Cell:
    """Seed the process and build the cell `cfg` describes on this rank's device."""
    _seed_process(cfg)
    device = dist.device
    channels_last = _uses_channels_last(cfg, device)
    model = build_model(cfg.model).to(device)  # initial weights from the RNG seeded above
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = _training_wrappers(cfg, dist, model)
    optimizer = build_optimizer(cfg.optimizer, train_model)
    remember_initial_values(optimizer)
    pipes = build_pipelines(cfg, device, dist.rank, dist.world_size, channels_last)
    return Cell(
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        # an epoch of the ViT recipe is train.repeated_aug passes over the training set
        schedule=Schedule.from_config(
            cfg.schedule, examples_per_epoch(debug.train_examples(cfg), int(cfg.train.repeated_aug))
        ),
        pipes=pipes,
        loss_fn=_loss_fn(cfg, pipes),
        # Loss scaling only for fp16; bf16 has fp32's exponent range and needs none.
        grad_scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        precision=precision,
        device=device,
        channels_last=channels_last,
        check_every=int(cfg.train.divergence_check_every),
    )


def _seed_process(cfg: DictConfig) -> None:
    """Threads, seeds and cuDNN's algorithm choice: what makes two runs of the cell alike."""
    if cfg.cpu_threads:
        torch.set_num_threads(int(cfg.cpu_threads))
    random.seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))
    torch.manual_seed(int(cfg.seed))
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _uses_channels_last(cfg: DictConfig, device: torch.device) -> bool:
    """`channels_last: auto` is on for CNNs on CUDA, where convolutions run faster in that layout."""
    if cfg.channels_last == "auto":
        return device.type == "cuda" and cfg.model.family == "cnn"
    return cfg.channels_last is True


def _training_wrappers(cfg: DictConfig, dist: DistContext, model: nn.Module) -> nn.Module:
    """`model` as the training step calls it: across ranks with DDP, compiled when asked."""
    wrapped = model
    if dist.world_size > 1:
        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _loss_fn(cfg: DictConfig, pipes: Pipelines) -> LossFn:
    """Cross-entropy; against soft targets when the pipelines mix batches (mixup/cutmix)."""
    if pipes.batch_transform is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=float(cfg.train.label_smoothing))
