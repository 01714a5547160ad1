"""OmegaConf resolvers the configs use, registered once on import of `runner`.

`equal_stages` lets the increasing-batch schedule follow `train.epochs`: with
five batch sizes and 200 epochs it yields five stages of 40 epochs, and with
10 epochs five stages of 2, so overriding the length never needs the stage list
to be rewritten by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf


def equal_stages(batch_sizes: Sequence[int], epochs: int) -> ListConfig:
    """One stage per batch size, the epochs split as evenly as possible (later stages get the remainder)."""
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("train.increasing_batch_sizes is empty; give at least one batch size, e.g. [16, 32]")
    epochs = int(epochs)
    if epochs < len(sizes):
        raise ValueError(
            f"train.epochs={epochs} is fewer than the {len(sizes)} increasing batch sizes {sizes}; "
            f"every stage needs at least one epoch"
        )
    share, remainder = divmod(epochs, len(sizes))
    first_long = len(sizes) - remainder
    return OmegaConf.create(
        [
            {"batch_size": int(size), "epochs": share + (1 if index >= first_long else 0)}
            for index, size in enumerate(sizes)
        ]
    )


def fewest_epochs(schedule_name: str, batch_sizes: Sequence[int]) -> int:
    """The shortest training a schedule allows (the debug presets): one epoch per + B stage, else one."""
    return len(list(batch_sizes)) if schedule_name == "batch" else 1


def variant_dir(variant: str | None) -> str:
    """`rho=0.1` -> `rho=0.1/`, "" -> "": the optional folder level between the cell and its seed."""
    return f"{variant}/" if variant else ""


def run_variant(*, _root_: DictConfig) -> str:
    """The variant of the config being run (see runner.sweep.identity); "" outside a Hydra app.

    A multirun's sweeper sets `variant` explicitly; this resolver names single runs.
    """
    from runner.sweep.identity import identity_in_app

    return identity_in_app(_root_).name


def register_resolvers() -> None:
    """Register the project's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("equal_stages"):
        OmegaConf.register_new_resolver("equal_stages", equal_stages)
    if not OmegaConf.has_resolver("fewest_epochs"):
        OmegaConf.register_new_resolver("fewest_epochs", fewest_epochs)
    if not OmegaConf.has_resolver("variant_dir"):
        OmegaConf.register_new_resolver("variant_dir", variant_dir)
    if not OmegaConf.has_resolver("run_variant"):
        # Not cached: OmegaConf would key the cache by the (empty) arguments, not by the config.
        OmegaConf.register_new_resolver("run_variant", run_variant, use_cache=False)
