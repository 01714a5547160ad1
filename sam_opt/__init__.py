"""SAM and GSAM as drop-in `torch.optim.Optimizer`s around any base optimizer.

    optimizer = sam_opt.GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.02, lr=0.1, model=model)
    loss = optimizer.step(closure)   # the closure computes the loss, calls backward, returns it

docs/sam_opt.md is the manual: the loops (closure, manual, GradScaler, DDP), the
formulas with their plain reference (`sam_opt.reference`), adding a variant,
and why the fast path is written as it is.
"""

from sam_opt.batchnorm import frozen_bn_stats
from sam_opt.distributed import local_gradients
from sam_opt.gsam import GSAM
from sam_opt.sam import SAM

__all__ = ["GSAM", "SAM", "frozen_bn_stats", "local_gradients"]
