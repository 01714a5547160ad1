"""SAM and GSAM as drop-in `torch.optim.Optimizer`s around any base optimizer.

    optimizer = sam_opt.GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.02,
                             lr=0.1, model=model)

`base_optimizer` is a built optimizer over the same params or a class /
`functools.partial` (Hydra `_partial_: true`) that receives the params and the
extra keyword arguments. `param_groups` and `state` are the base optimizer's,
so lr schedulers work unchanged, and `rho`, `alpha`, `adaptive`, `eta` sit in
every group next to `lr` for schedules to set per step. `SAM(rho=0)` is exactly
the base optimizer and evaluates the closure once.

Closure loop (the usual one). `step` zeroes the gradients before each call,
calls the closure at w and at w + e, leaves the weights at w, takes the base
step and returns the first loss (a tensor; nothing is read on the host)::

    def closure():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)

Without a closure (the two passes written out)::

    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.first_step()                   # w -> w + e; clears the gradients
    with sam_opt.frozen_bn_stats(model):
        loss_fn(model(x), y).backward()
    optimizer.second_step()                  # back to w; direction; base step

fp16 with a `torch.amp.GradScaler`: the closure backpropagates the scaled loss
and returns the unscaled one; pass the scaler to `step` and update it after::

    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    def closure():
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        return loss

    loss = optimizer.step(closure, grad_scaler=scaler)
    scaler.update()

The perturbation is computed from unscaled gradients (1/S is read from the
scaler as a tensor); the final direction is unscaled and checked by the
scaler, and an inf/NaN in either pass skips the base step exactly as
`scaler.step` does (the scale then backs off in `scaler.update()`). A disabled
scaler is accepted and ignored, so one loop serves fp32, bf16 and fp16. The
manual loop passes `grad_scaler=scaler` to both `first_step` and `second_step`.
Only the scaler's own skip decision reads a flag on the host, and not even
that with a fused base optimizer (`torch.optim.SGD(..., fused=True)`).

Gradient accumulation: the closure may loop over micro-batches, calling
backward on each (loss / n for a mean); gradients accumulate as usual. The
perturbation then comes from the gradient of the whole batch and both passes
see the same micro-batches, so the step equals one step on the whole batch
(up to BatchNorm, which normalises per micro-batch as in any accumulation).

Gradient clipping (`max_grad_norm`) applies to the final direction. Order in
`second_step`: restore w; GSAM decomposition; DDP average; unscale and inf/NaN
check (scaler); clip; base step. The perturbation needs no clipping: it only
uses the direction of g.

DistributedDataParallel: pass the DDP-wrapped module as `model`. Both passes
then run under `model.no_sync()`: each worker perturbs with its own gradient
(m-sharpness, m = per-worker batch) and forms its own direction, and
`second_step` averages the directions once before the base step. With rho = 0
the single pass syncs through DDP as usual. Manual loops run both passes under
`sam_opt.local_gradients(model)`. Without `model`, DDP averages each pass
(perturbation from the global gradient) and BatchNorm statistics are updated
twice per step.

Back to w: `second_step` (and a closure that raises in the second pass)
moves the weights back by subtracting e, within one rounding of w in float32
(about 1e-7 relative, far below any update), or, with `exact_restore=True`,
a GradScaler, 16-bit weights or a DDP `model`, by copying a saved w back
bit for bit (`sam_opt.perturbation` says why each needs it).

Speed: every per-parameter operation is a `torch._foreach_*` call and nothing
is read on the host. The form depends on the device (`sam_opt.foreach`): on
GPUs, multi-tensor kernels; on the CPU, where foreach calls run tensor by
tensor and the step is bound by passes over memory, one-pass `addcmul`, dot
products by matrix product, and GSAM's passes run block by block in cache.

BatchNorm: with `model` given, the second pass runs inside
`frozen_bn_stats(model)`, so running statistics change exactly as after the
first forward pass alone.
"""

from sam_opt.batchnorm import frozen_bn_stats
from sam_opt.distributed import local_gradients
from sam_opt.gsam import GSAM
from sam_opt.sam import SAM

__all__ = ["GSAM", "SAM", "frozen_bn_stats", "local_gradients"]
