"""Names shared by every output: config names -> the labels the paper prints.

The records carry config names (`cifar10`, `wrn28_10`, `sam`, `batch`); the
tables, figures and captions use the paper's spelling. Keeping the mapping and
the column order here means the tables, the comparison, the claims and the
figures cannot disagree about what a column is called or where it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The paper's sharpness measure (worst-case l_inf m-sharpness); the default row.
PAPER_MEASURE = "worst_linf"

# The names the paper (and this project's built-in options) print, in the paper's order. Other
# names come from the records themselves, a user's optimizer or schedule included: they follow
# the known ones, alphabetically (`optimizer_order`, `schedule_order`), never hidden.
OPTIMIZERS = ("sgd", "sam", "gsam")
# Column blocks in the paper's order; "linear" is this project's fourth schedule.
SCHEDULES = ("constant", "batch", "cosine", "linear")
PAPER_SCHEDULES = SCHEDULES[:3]

_OPTIMIZER_LABELS = {"sgd": "SGD", "sam": "SAM", "gsam": "GSAM"}
_SCHEDULE_SUFFIXES = {"constant": "", "batch": " + B", "cosine": " + C", "linear": " + L"}

DATASET_ORDER = ("cifar10", "cifar100", "tiny_imagenet", "imagenet", "digits", "synthetic")
MODEL_ORDER = ("resnet18", "wrn28_10", "resnet50", "vit_tiny", "vit_small")

_DATASET_TITLES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tiny_imagenet": "Tiny-ImageNet",
    "imagenet": "ImageNet",
    "digits": "Digits",
    "synthetic": "Synthetic",
}
_MODEL_TITLES = {
    "resnet18": "ResNet-18",
    "wrn28_10": "WideResNet-28-10",
    "resnet50": "ResNet-50",
    "vit_tiny": "ViT-Tiny",
    "vit_small": "ViT-Small",
}

TEST_ERROR_ROW = "Test Error (%)"
SHARPNESS_ROW = "Sharpness"


def dataset_title(name: str) -> str:
    """Pretty dataset name for titles; unknown names are shown as they are."""
    return _DATASET_TITLES.get(name, name)


def model_title(name: str) -> str:
    """Pretty model name for titles; unknown names are shown as they are."""
    return _MODEL_TITLES.get(name, name)


PRESET_LABEL = "preset values"


def variant_label(variant: str) -> str:
    """A variant as a reader sees it: `rho=0.1`, or `preset values` for the preset's own ("")."""
    return variant or PRESET_LABEL


def table_title(dataset: str, model: str, experiment: str | None = None, variant: str | None = None) -> str:
    """`CIFAR-10, ResNet-18`, with the experiment and the variant added when they must tell tables apart."""
    title = f"{dataset_title(dataset)}, {model_title(model)}"
    if variant is not None:
        title += f", {variant_label(variant)}"
    return f"{title} (experiment {experiment})" if experiment else title


def cell_label(optimizer: str, schedule: str) -> str:
    """Column label of a grid cell: `SAM + B`. Unknown names still get a readable label."""
    opt = _OPTIMIZER_LABELS.get(optimizer, optimizer.upper())
    suffix = _SCHEDULE_SUFFIXES.get(schedule, f" + {schedule}")
    return opt + suffix


def ordered(names: Iterable[str], known: Sequence[str]) -> list[str]:
    """`names` once each: those of `known` in its order, then the others alphabetically."""
    present = set(names)
    return [name for name in known if name in present] + sorted(present - set(known))


def optimizer_order(names: Iterable[str]) -> list[str]:
    """Optimizers as columns go: SGD, SAM, GSAM, then any other optimizer the records name, alphabetically."""
    return ordered(names, OPTIMIZERS)


def schedule_order(names: Iterable[str]) -> list[str]:
    """Schedules as column blocks go: constant, + B, + C, + L, then any other, alphabetically."""
    return ordered(names, SCHEDULES)


def cell_order(cells: set[tuple[str, str]] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (optimizer, schedule) cells of one table in column order.

    One block per schedule (`schedule_order`), one column per optimizer within it
    (`optimizer_order`). The paper's three schedule blocks are always there, and
    every block that a run made (`+ L`, a user's own schedule) follows; each block
    holds SGD, SAM and GSAM even when missing (a missing cell is shown as `-`, not
    dropped), and any other optimizer where it ran, so a user's own optimizer or
    schedule is a column of its own and nothing a sweep produced is hidden.
    """
    present = set(cells)
    blocks = set(PAPER_SCHEDULES) | {sched for _, sched in present}
    shown = present | {(opt, sched) for sched in blocks for opt in OPTIMIZERS}
    return [
        (opt, sched)
        for sched in schedule_order(s for _, s in shown)
        for opt in optimizer_order(o for o, _ in shown)
        if (opt, sched) in shown
    ]


def table_sort_key(dataset: str, model: str) -> tuple:
    """Tables appear in the paper's order (datasets, then models), unknown names last."""

    def rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
        return (order.index(name), "") if name in order else (len(order), name)

    return rank(dataset, DATASET_ORDER) + rank(model, MODEL_ORDER)


def slug(*parts: str) -> str:
    """A file-name-safe key for a table: `cifar10-resnet18`, `paper_cifar10_resnet18-cifar10-resnet18`."""
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts if p)
