"""SAM and GSAM as drop-in `torch.optim.Optimizer`s around any base optimizer.

    optimizer = sam_opt.GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.02, lr=0.1, model=model)
    loss = optimizer.step(closure)   # the closure computes the loss, calls backward, returns it

docs/sam_opt.md is the manual: the loops (closure, manual, GradScaler, DDP), the
formulas with their plain reference (`sam_opt.reference`), adding a variant,
and why the fast path is written as it is.

`OPTIMIZERS` is the registry of the classes a config may name in `optimizer._target_`:
the two built-in ones under the paths conf/optimizer/ writes, and the variants a user's
package adds with `register` (through runner.sweep.registry's entry points or `plugins=`).
"""

from collections.abc import Mapping
from types import MappingProxyType

from sam_opt.batchnorm import frozen_bn_stats
from sam_opt.distributed import local_gradients
from sam_opt.gsam import GSAM
from sam_opt.sam import SAM

_OPTIMIZERS: dict[str, type[SAM]] = {"sam_opt.SAM": SAM, "sam_opt.GSAM": GSAM}
# `optimizer._target_` -> class; read-only, added to by `register`.
OPTIMIZERS: Mapping[str, type[SAM]] = MappingProxyType(_OPTIMIZERS)


def target_path(optimizer: type) -> str:
    """The `_target_` a config writes for a class: its module and qualified name."""
    return f"{optimizer.__module__}.{optimizer.__qualname__}"


def register(optimizer: type) -> str:
    """Make a SAM variant nameable by configs; returns its `_target_` path.

    Only subclasses of `SAM` qualify: the training step, checkpoints and schedules rely on
    its contract (closure step, per-group rho, state_dict round trip).
    """
    if not (isinstance(optimizer, type) and issubclass(optimizer, SAM)):
        raise TypeError(f"{optimizer!r} is not a subclass of sam_opt.SAM")
    path = target_path(optimizer)
    if _OPTIMIZERS.get(path, optimizer) is not optimizer:
        raise ValueError(f"{path} is registered already as another class")
    _OPTIMIZERS[path] = optimizer
    return path


__all__ = ["GSAM", "OPTIMIZERS", "SAM", "frozen_bn_stats", "local_gradients", "register", "target_path"]
