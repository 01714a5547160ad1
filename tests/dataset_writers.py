"""Write small datasets in the real on-disk formats, for tests that load them through the user's code path.

Each writer produces the layout the official archive extracts to (CIFAR python
pickle batches and their meta files, the Tiny-ImageNet tree, an ImageFolder
tree) and returns what it wrote, so a test can compare the loaded tensors with
the truth. Importable from any test (`from dataset_writers import write_cifar10`;
pytest puts `tests/` on sys.path).

CIFAR files written here naturally fail the official md5 sums; configs that
load them need `verify_checksums: false` (see `cifar_cfg`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Split = tuple[np.ndarray, np.ndarray]  # (uint8 N×C×H×W images, int64 labels)


def _images_and_labels(rng: np.random.Generator, count: int, num_classes: int, size: int = 32) -> Split:
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
    images = rng.integers(0, 256, size=(count, 3, size, size), dtype=np.uint8)
    return images, labels


def _pickle(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the official files are Python 2 pickles


def write_cifar10(root: str | Path, n_train: int = 10, n_test: int = 5, *, seed: int = 0) -> dict[str, Split]:
    """`<root>/cifar-10-batches-py/` with data_batch_1..5, test_batch, batches.meta and readme.html.

    The training images are spread over the five batch files as in the real
    data (some batches may be empty when n_train < 5). Returns
    {"train": (images, labels), "test": (images, labels)} in file order.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train, test = _images_and_labels(rng, n_train, 10), _images_and_labels(rng, n_test, 10)
    for number, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _pickle(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of 5",
                "labels": train[1][chunk].tolist(),
                "data": train[0][chunk].reshape(len(chunk), 3 * 32 * 32),
                "filenames": [f"image_{i}.png" for i in chunk],
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test[1].tolist(),
            "data": test[0].reshape(n_test, 3 * 32 * 32),
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    _pickle(
        folder / "batches.meta",
        {
            "num_cases_per_batch": 10000,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "num_vis": 3 * 32 * 32,
        },
    )
    (folder / "readme.html").write_text("<html>small test copy</html>\n")
    return {"train": train, "test": test}


def write_cifar100(root: str | Path, n_train: int = 10, n_test: int = 5, *, seed: int = 0) -> dict[str, Split]:
    """`<root>/cifar-100-python/` with train, test and meta (fine and coarse labels, as in the real files)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": _images_and_labels(rng, n_train, 100), "test": _images_and_labels(rng, n_test, 100)}
    for name, (images, labels) in splits.items():
        _pickle(
            folder / name,
            {
                "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
                "batch_label": f"{'training' if name == 'train' else 'testing'} batch 1 of 1",
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
                "data": images.reshape(len(labels), 3 * 32 * 32),
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{k}" for k in range(100)],
            "coarse_label_names": [f"coarse_{k}" for k in range(20)],
        },
    )
    return splits


def class_color(k: int) -> tuple[int, int, int]:
    """A flat RGB colour per class, far apart so JPEG round-off cannot confuse them."""
    return (40 * (k % 6) + 20, 255 - 30 * (k % 8), 60 * (k // 6 % 4) + 10)


def _save_flat(path: Path, color: tuple[int, int, int], size: int | tuple[int, int], grey: bool = False) -> None:
    width, height = (size, size) if isinstance(size, int) else size
    image = Image.new("RGB", (width, height), color)
    if grey:
        image = image.convert("L")  # greyscale JPEGs exist in the real Tiny-ImageNet
    image.save(path)


def write_tiny_imagenet(
    root: str | Path, n_classes: int = 3, per_class: int = 4, val_per_class: int = 2
) -> dict[str, Any]:
    """`<root>/tiny-imagenet-200/` in the official zip layout, 64×64 JPEGs of one flat colour per class.

    wnids.txt lists the wnids in an unsorted order (as the real file does);
    the first training image of the first listed class is greyscale. Returns
    {"folder", "wnids" (file order), "sorted_wnids", "colors" {wnid: rgb},
    "grey" (path of the greyscale image), "counts" {"train", "test"}}.
    """
    folder = Path(root) / "tiny-imagenet-200"
    wnids = [f"n{9_000_000 - 1_000 * k:08d}" for k in range(n_classes)]  # descending: file order ≠ sorted order
    colors = {wnid: class_color(k) for k, wnid in enumerate(wnids)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in wnids))
    grey = folder / "train" / wnids[0] / "images" / f"{wnids[0]}_0.JPEG"
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(per_class):
            path = images / f"{wnid}_{i}.JPEG"
            _save_flat(path, colors[wnid], 64, grey=path == grey)
            boxes.append(f"{path.name}\t0\t0\t63\t63\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    (folder / "val" / "images").mkdir(parents=True)
    annotations = []
    for k in range(n_classes * val_per_class):
        wnid = wnids[k % n_classes]
        _save_flat(folder / "val" / "images" / f"val_{k}.JPEG", colors[wnid], 64)
        annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    (folder / "test" / "images").mkdir(parents=True)  # unlabelled official test images
    _save_flat(folder / "test" / "images" / "test_0.JPEG", (0, 0, 0), 64)
    return {
        "folder": folder,
        "wnids": wnids,
        "sorted_wnids": sorted(wnids),
        "colors": colors,
        "grey": grey,
        "counts": {"train": n_classes * per_class, "test": n_classes * val_per_class},
    }


def write_imagefolder(
    root: str | Path,
    n_classes: int = 3,
    per_class: int = 2,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    size: tuple[int, int] = (48, 40),
    suffix: str = ".JPEG",
) -> dict[str, Any]:
    """`<root>/<split>/<class>/*<suffix>` class-folder trees (the prepared ImageNet layout), flat colour per class.

    Returns {"classes" (sorted, so index = label), "colors" {class: rgb}, "counts" {split: n}}.
    """
    classes = [f"n{1_000_000 + 17 * k:08d}" for k in range(n_classes)]
    for split in splits:
        for k, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _save_flat(folder / f"{name}_{split}_{i}{suffix}", class_color(k), size)
    return {
        "classes": classes,
        "colors": {name: class_color(k) for k, name in enumerate(classes)},
        "counts": {split: n_classes * per_class for split in splits},
    }


def cifar_cfg(name: str, root: str | Path, train_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A dataset config for the CIFAR files written above (md5 verification off: they are not the official files)."""
    cfg = {
        "name": name,
        "root": str(root),
        "download": False,
        "verify_checksums": False,
        "num_classes": 10 if name == "cifar10" else 100,
        "image_size": 32,
        "channels": 3,
        "mean": [0.49, 0.48, 0.45],
        "std": [0.25, 0.24, 0.26],
        "train_size": train_size,
        "augment": "crop_flip",
    }
    return {**cfg, **overrides}
