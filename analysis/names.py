"""Names shared by every output: config names -> the labels the paper prints.

The records carry config names (`cifar10`, `wrn28_10`, `sam`, `batch`); the
tables, figures and captions use the paper's spelling. Keeping the mapping and
the column order here means the tables, the comparison, the claims and the
figures cannot disagree about what a column is called or where it goes.
"""

from __future__ import annotations

# The paper's sharpness measure (worst-case l_inf m-sharpness); the default row.
PAPER_MEASURE = "worst_linf"

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


def cell_order(cells: set[tuple[str, str]] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (optimizer, schedule) cells of one table in the paper's column order.

    The nine paper cells always come first, in the paper's order, even when
    missing (a missing cell is shown as `-`, not dropped); `+ L` cells follow
    when any linear run exists; cells with names this module does not know
    come last, sorted, so nothing a sweep produced is hidden.
    """
    present = set(cells)
    order = [(opt, sched) for sched in PAPER_SCHEDULES for opt in OPTIMIZERS]
    if any(sched == "linear" for _, sched in present):
        order += [(opt, "linear") for opt in OPTIMIZERS]
    known = set(order)
    return order + sorted(present - known, key=lambda c: (c[1], c[0]))


def table_sort_key(dataset: str, model: str) -> tuple:
    """Tables appear in the paper's order (datasets, then models), unknown names last."""

    def rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
        return (order.index(name), "") if name in order else (len(order), name)

    return rank(dataset, DATASET_ORDER) + rank(model, MODEL_ORDER)


def slug(*parts: str) -> str:
    """A file-name-safe key for a table: `cifar10-resnet18`, `paper_cifar10_resnet18-cifar10-resnet18`."""
    return "-".join(p.replace("/", "_").replace(" ", "_") for p in parts if p)
