"""SAM (Foret et al., 2021) as a `torch.optim.Optimizer` that wraps any base optimizer.

One step, with g the gradient at w:

    e   = rho * T^2 g / (||T g|| + 1e-12)       (sam_opt.perturbation)
    g_p = gradient at w + e
    w  <- base_step(w, d),  d = g_p             (GSAM changes only d)

This module runs the two passes around the closure: gradient sync (DDP),
BatchNorm freezing, the GradScaler, clipping and the base step
(docs/sam_opt.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sam_opt import validation
from sam_opt.amp import active_scaler, guarded_step, inverse_scale
from sam_opt.base import BaseOptimizer, build_base
from sam_opt.batchnorm import frozen_bn_stats
from sam_opt.distributed import all_reduce_mean_, find_ddp, local_gradients
from sam_opt.foreach import poison_if
from sam_opt.perturbation import BackupBuffers, Perturbation, gradient_buckets, perturb

Closure = Callable[[], Any]


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation around `base_optimizer` (an instance, or a class / partial).

    `rho`, `adaptive` and `eta` live in every param group (like `lr`), so a
    schedule may set them per step and per group; `param_groups` and `state`
    are the base optimizer's own objects. `rho = 0` is exactly the base
    optimizer and evaluates the closure once. `model`, when given, is the module
    being trained: its BatchNorm statistics are frozen for the second pass and,
    if it is DDP-wrapped, gradients are averaged once per step. `max_grad_norm`
    clips the final direction before the base step. `exact_restore=True` brings
    the weights back to w bit for bit (a copy of them, kept across steps)
    instead of within one float32 rounding (w + e - e); it is implied by a
    GradScaler, 16-bit weights and a DDP `model`. docs/sam_opt.md has the loops
    and the reasons.

    Subclassing: a variant calls `_setup` from its `__init__` and overrides
    the hooks `_keeps_first_gradients`, `_restore_and_combine` and
    `_check_groups`; GSAM is one, docs/sam_opt.md works another out.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: BaseOptimizer,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        *,
        model: nn.Module | None = None,
        max_grad_norm: float | None = None,
        exact_restore: bool = False,
        **base_kwargs: Any,
    ) -> None:
        hyperparameters = {"rho": rho, "adaptive": adaptive, "eta": eta}
        self._setup(params, base_optimizer, hyperparameters, model, max_grad_norm, exact_restore, base_kwargs)

    def _setup(
        self,
        params: Iterable[Any],
        base_optimizer: BaseOptimizer,
        hyperparameters: dict[str, Any],
        model: nn.Module | None,
        max_grad_norm: float | None,
        exact_restore: bool,
        base_kwargs: dict[str, Any],
    ) -> None:
        """Build the optimizer: every `__init__`, SAM's and a variant's, ends here.

        `hyperparameters` maps each per-group setting to its default (SAM: rho,
        adaptive, eta; GSAM adds alpha). They are filled into every param group
        next to `lr` (a group's own value wins), kept across `load_state_dict`,
        checked by `_check_groups`, and a schedule may write them between
        steps. `base_kwargs` build the base optimizer when it is given as a
        class or partial.
        """
        validation.check_group(hyperparameters)
        validation.check_max_grad_norm(max_grad_norm)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        if not isinstance(exact_restore, bool):
            raise TypeError(f"exact_restore must be True or False, got {exact_restore!r}")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        base = build_base(params, base_optimizer, base_kwargs, tuple(hyperparameters))
        # Optimizer.__init__ fills the SAM defaults into the base's own group dicts
        # (setdefault: per-group values given by the caller win); then both share them.
        super().__init__(base.param_groups, hyperparameters)
        self.base_optimizer = base
        self.param_groups = base.param_groups
        self.state = base.state
        self.defaults = {**base.defaults, **hyperparameters}
        self.model = model
        self.max_grad_norm = max_grad_norm
        self.exact_restore = exact_restore
        self._hyperparameters = dict(hyperparameters)
        self._ddp = find_ddp(model)
        self._perturbation: Perturbation | None = None
        self._backups = BackupBuffers()
        self._check_groups()

    @property
    def needs_second_pass(self) -> bool:
        """False when every group has rho = 0: the step is then the base step, with one pass."""
        return any(group["rho"] != 0 for group in self.param_groups)

    def step(self, closure: Closure | None = None, *, grad_scaler: torch.amp.GradScaler | None = None) -> Any:
        """One SAM step; returns the closure's loss at w (the first pass).

        The closure computes the loss, calls backward on it (on
        `grad_scaler.scale(loss)` with a scaler) and returns it; gradients are
        zeroed before each call. Without a closure, `step()` completes a pending
        `first_step()` (it is `second_step()`), or is the plain base step when
        rho = 0 everywhere.
        """
        scaler = active_scaler(grad_scaler)
        if closure is None:
            if self._perturbation is not None:
                self.second_step(grad_scaler=grad_scaler)
                return None
            if self.needs_second_pass:
                raise RuntimeError(
                    f"{type(self).__name__}.step() needs a closure that computes the loss and calls backward "
                    f"(rho > 0 evaluates it twice); without one, call first_step() and second_step()"
                )
            self._check_groups()
            self._base_step(scaler)
            return None
        if self._perturbation is not None:
            raise RuntimeError("step(closure) was called between first_step() and second_step(); call second_step()")
        self._check_groups()
        closure = torch.enable_grad()(closure)
        if not self.needs_second_pass:
            self.zero_grad(set_to_none=True)
            loss = closure()
            self._base_step(scaler)
            return loss
        with local_gradients(self.model):
            self.zero_grad(set_to_none=True)
            loss = closure()
            self.first_step(grad_scaler=grad_scaler)
            try:
                with frozen_bn_stats(self.model):
                    closure()
            except BaseException:
                self._perturbation.restore()  # leave no perturbed model behind
                self._perturbation = None
                raise
        self.second_step(grad_scaler=grad_scaler)
        return loss

    @torch.no_grad()
    def first_step(self, *, grad_scaler: torch.amp.GradScaler | None = None) -> None:
        """Move the weights from w to w + e using the gradients at w, and clear the gradients.

        Call after the first backward pass; then run the second forward-backward
        pass (under `frozen_bn_stats(model)`, and `local_gradients(model)` with
        DDP) and call `second_step()`.
        """
        if self._perturbation is not None:
            raise RuntimeError("first_step() was called twice; call second_step() after each first_step()")
        self._check_groups()
        scaler = active_scaler(grad_scaler)
        buckets = gradient_buckets(self.param_groups)
        if not buckets:
            raise RuntimeError("first_step() found no gradients: call backward() on the loss before first_step()")
        unscale = inverse_scale(scaler, buckets[0][1][0].device) if scaler is not None else None
        self._perturbation = perturb(
            buckets,
            self._backups,
            keep_first_grads=self._keeps_first_gradients(),
            unscale=unscale,
            # Per-worker e under DDP: every replica must come back to the very same w.
            exact_restore=self.exact_restore or self._ddp is not None,
        )

    @torch.no_grad()
    def second_step(self, *, grad_scaler: torch.amp.GradScaler | None = None) -> None:
        """Move the weights back to w, form the direction from the gradients at w + e, take the base step.

        Order: restore w; direction (GSAM's decomposition); average over DDP
        workers; unscale and check for inf/NaN (scaler); clip to
        `max_grad_norm`; base step (skipped on inf/NaN with a scaler).
        """
        perturbation = self._perturbation
        if perturbation is None:
            raise RuntimeError("second_step() needs a first_step() before it (or use step(closure))")
        scaler = active_scaler(grad_scaler)
        if (scaler is not None) != (perturbation.overflow is not None):
            raise RuntimeError("pass the same grad_scaler (or none) to first_step() and second_step()")
        self._perturbation = None
        second_grads = [[_grad_or_zeros(param) for param in bucket.params] for bucket in perturbation.buckets]
        self._restore_and_combine(perturbation, second_grads)
        if perturbation.overflow is not None:
            # An overflow in the first pass must skip the step even if the second looks finite.
            poison_if(perturbation.overflow, [grad for grads in second_grads for grad in grads])
        if self._ddp is not None:
            trained = [param for group in self.param_groups for param in group["params"] if param.requires_grad]
            all_reduce_mean_([_grad_or_zeros(param) for param in trained], self._ddp.process_group)
        self._base_step(scaler)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (e.g. momentum) and every group's settings, rho/alpha included."""
        if self._perturbation is not None:
            raise RuntimeError("state_dict() was called between first_step() and second_step(), with perturbed weights")
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimizer and share its new groups and state again."""
        if self._perturbation is not None:
            raise RuntimeError("load_state_dict() was called between first_step() and second_step()")
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        for group in self.param_groups:
            for key, default in self._hyperparameters.items():
                group.setdefault(key, default)
        self._check_groups()

    def _keeps_first_gradients(self) -> bool:
        """Hook: whether the first step must keep g, the gradient at w, for the direction.

        SAM updates with g_p alone: False. When True, every bucket of the
        perturbation holds g unmodified in `first_grads`, and
        `perturbation.first_grad_sq` holds ||g||^2. Asked once per step, in
        `first_step`.
        """
        return False

    def _restore_and_combine(self, perturbation: Perturbation, second_grads: list[list[Tensor]]) -> None:
        """Hook: move the weights back to w and turn the gradients at w + e, in place, into the update direction.

        `second_grads[i]` are the `.grad` tensors of `perturbation.buckets[i].params`
        (g_p; zeros where the second pass reached no parameter), one bucket per
        param group, device and dtype; whatever they hold on return is what the
        base optimizer steps with, after the DDP average, the GradScaler's
        unscale and check, and clipping. `perturbation.restore()` moves every
        weight back; call it before writing into a bucket's `first_grads`, as
        restoring by subtraction may read g. With a GradScaler, g and g_p carry
        the same scale S, so the direction must be linear in them or unchanged
        by S. SAM leaves g_p as it is; GSAM interleaves its decomposition with
        the restore.
        """
        perturbation.restore()

    def _check_groups(self) -> None:
        """Hook: check every group's settings (one-line errors); at construction and before every step.

        Schedules write the settings between steps, so they are checked again
        each time; a variant with a new setting extends this check.
        """
        for index, group in enumerate(self.param_groups):
            validation.check_group(group, f"param_groups[{index}]")

    def _base_step(self, scaler: torch.amp.GradScaler | None) -> None:
        clip = None
        if self.max_grad_norm is not None:
            params = [param for group in self.param_groups for param in group["params"]]
            clip = lambda: torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)  # noqa: E731
        guarded_step(self.base_optimizer, scaler, clip)


def _grad_or_zeros(param: Tensor) -> Tensor:
    """A parameter's gradient; a zero one if the pass left none (an unused branch)."""
    if param.grad is None:
        param.grad = torch.zeros_like(param)
    return param.grad
