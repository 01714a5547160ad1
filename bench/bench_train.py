"""Benchmark: images per second of a training step, ours against the research code's style, end to end.

"ours" is what a grid cell runs: `runner.training.device_loader.DeviceLoader` feeding
`runner.training.steps.train_epoch` (autocast bf16 and channels_last on CUDA, metrics
kept on the device) with `sam_opt.SAM` / `sam_opt.GSAM` (SGD is SAM with
rho = 0). The baseline is written here in the style of the original research
code: torchvision's CIFAR10 dataset with PIL transforms in a DataLoader with 2
workers, fp32, an SAM/GSAM with Python loops over the parameters (SGD: torch's
SGD with `foreach=False`, as torch 1.x ran it), BatchNorm momentum toggled by
hand, and `loss.item()` / accuracy read on the host every step for logging.

Both read the same fake CIFAR-10, written in the real pickle format into a
temporary folder, train the same CIFAR ResNet-18 (`--width`, 16 on a CPU, 64
on a GPU) from the same initial weights, and run interleaved (ours, baseline,
baseline, ours, ...) for `--rounds` rounds; the tables give medians of rates
and of per-round ratios. A second table times the data pipelines alone.

`--project TABLE...` (or `all`) also measures, for each paper table, our step
and the baseline's on its model and image size (fewer steps, one round) and
projects the table's wall time on this device: 9 cells (SGD, SAM, GSAM x
constant batch 128, increasing batch 16..256 for an equal share of the epochs,
cosine batch 128), `--epochs` 200, the full training set per epoch, training
steps only (evaluation, sharpness and start-up excluded). ImageNet is timed
model-only (device-resident random batches for both), since its JPEG pipeline
is the torchvision path in both cases.

    .venv/bin/python bench/bench_train.py --device cpu            # 2 quiet CPU cores: ~10 min
    python bench/bench_train.py --device cuda --project all       # one H100: 5-8 min (estimated; capped)

Every setting of the paper comes from `conf/`, composed as `launch.py` composes a
cell of the paper presets (`paper_cell`): lr, rho, alpha and the base optimizer,
the batch sizes and stages of each schedule, the epochs, the grid, the dataset's
size, image size, classes, mean and std, and the networks. docs/paper.md maps
them to the paper.

Progress goes to stderr; the Markdown tables go to stdout (and `--markdown FILE`).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms as T  # noqa: E402
from torchvision.datasets import CIFAR10  # noqa: E402

from runner.data import crop_padding, load_tensors  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.training.build import build_optimizer  # noqa: E402
from runner.training.device_loader import DeviceLoader  # noqa: E402
from runner.training.schedule import Schedule, Stage, remember_initial_values  # noqa: E402
from runner.training.steps import resolve_precision, train_epoch  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
# The paper table whose network and data the main measurement uses (its model width aside).
MAIN_TABLE = "cifar10_resnet18"


@functools.cache
def paper_cell(table: str, *overrides: str) -> DictConfig:
    """The config `launch.py experiment=paper/<table> <overrides>` composes, the hydra node included.

    The benchmark's one source for the authors' hyperparameters (docs/paper.md): it
    times the steps a cell of that table would run, so it reads what the cell reads.
    """
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"experiment=paper/{table}", *overrides], return_hydra_config=True)


def grid(table: str) -> tuple[list[str], list[str]]:
    """(optimizers, schedules) the table's sweep crosses, in the paper's column order."""
    params = paper_cell(table).hydra.sweeper.params
    return str(params.optimizer).split(","), str(params.schedule).split(",")


def dataset_facts(table: str) -> dict:
    """The table's dataset config, resolved: sizes, image size, classes, mean and std."""
    return OmegaConf.to_container(paper_cell(table).dataset, resolve=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def write_fake_cifar10(root: Path, train_size: int, seed: int = 0) -> Path:
    """Random images in CIFAR-10's python pickle layout (5 training batches, test batch, meta)."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (train_size, 3 * 32 * 32), dtype=np.uint8)
    labels = rng.integers(0, 10, train_size)
    for number, chunk in enumerate(np.array_split(np.arange(train_size), 5), start=1):
        entry = {
            "batch_label": f"training batch {number} of 5",
            "data": images[chunk],
            "labels": labels[chunk].tolist(),
            "filenames": [f"{i}.png" for i in chunk],
        }
        with open(folder / f"data_batch_{number}", "wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(
            {
                "batch_label": "testing batch 1 of 1",
                "data": images[:100],
                "labels": labels[:100].tolist(),
                "filenames": [],
            },
            handle,
            protocol=2,
        )
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [str(i) for i in range(10)], "num_cases_per_batch": 10000}, handle, protocol=2)
    return root


class FakeCIFAR10(CIFAR10):
    """torchvision's CIFAR10 reading the benchmark's files, which cannot match the official md5 sums."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class PILImages(Dataset):
    """In-memory uint8 images through PIL and a transform, as torchvision's CIFAR10 serves them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform  # images N×H×W×C

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def research_transform(size: int, pad: int, mean: tuple, std: tuple) -> T.Compose:
    return T.Compose([T.RandomCrop(size, padding=pad), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


@dataclass
class Workload:
    """A model at an image size, with the data both implementations read."""

    name: str
    table: str  # the paper table whose cells this workload times: their optimizer settings
    make_model: Callable[[], nn.Module]
    image_size: int
    classes: int
    device_data: Callable[[], DeviceLoader] | None  # None: model only (random batches on the device)
    pil_data: Callable[[], Dataset] | None


def table_model(table: str, *overrides: str) -> Callable[[], nn.Module]:
    """A constructor of the table's network, as its config builds it."""
    return lambda: build_model(paper_cell(table, *overrides).model)


def cifar_workload(
    name: str,
    table: str,
    make_model: Callable[[], nn.Module],
    root: Path,
    train_size: int,
    device: torch.device,
    channels_last: bool,
) -> Workload:
    """The fake CIFAR-10 files under `root`, read as the table's dataset config reads CIFAR."""
    facts = dataset_facts(table)
    config = {**facts, "root": str(root), "download": False, "verify_checksums": False, "train_size": train_size}
    size, mean, std = int(facts["image_size"]), tuple(facts["mean"]), tuple(facts["std"])
    pad = crop_padding(size)

    def device_data() -> DeviceLoader:
        images, labels = load_tensors(config, "train")
        return DeviceLoader(
            images,
            labels,
            mean=mean,
            std=std,
            augment=True,
            pad=pad,
            device=device,
            seed=0,
            channels_last=channels_last,
        )

    def pil_data() -> Dataset:
        return FakeCIFAR10(str(root), train=True, transform=research_transform(size, pad, mean, std))

    return Workload(name, table, make_model, size, int(facts["num_classes"]), device_data, pil_data)


def memory_workload(name: str, table: str, count: int, device: torch.device, channels_last: bool) -> Workload:
    """`count` random images of the table's image size in memory (Tiny-ImageNet: 64 px, padding 8)."""
    facts = dataset_facts(table)
    size, classes, mean, std = int(facts["image_size"]), int(facts["num_classes"]), facts["mean"], facts["std"]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, count)
    pad = crop_padding(size)

    def device_data() -> DeviceLoader:
        return DeviceLoader(
            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(labels),
            mean=mean,
            std=std,
            augment=True,
            pad=pad,
            device=device,
            seed=0,
            channels_last=channels_last,
        )

    def pil_data() -> Dataset:
        return PILImages(images, labels, research_transform(size, pad, mean, std))

    return Workload(name, table, table_model(table), size, classes, device_data, pil_data)


def model_only_workload(name: str, table: str) -> Workload:
    """The table's network on random batches of its image size (no data pipeline timed)."""
    facts = dataset_facts(table)
    return Workload(name, table, table_model(table), int(facts["image_size"]), int(facts["num_classes"]), None, None)


def device_stream(loader: DeviceLoader, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of consecutive epochs, forever."""
    for epoch in itertools.count():
        yield from loader.batches(epoch, batch_size)


def pil_stream(dataset: Dataset, batch_size: int, workers: int, device: torch.device) -> Iterator:
    """The research code's loader, epoch after epoch (workers restart each epoch, as theirs did)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)
    while True:
        for images, labels in loader:
            yield images.to(device), labels.to(device)


def random_stream(workload: Workload, batch_size: int, device: torch.device, channels_last: bool) -> Iterator:
    """One random normalised batch on the device, repeated: the model-only workloads."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, workload.image_size, workload.image_size, generator=generator).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, workload.classes, (batch_size,), generator=generator).to(device)
    return itertools.repeat((images, labels))


# ----------------------------------------------------------------------------- the research-style optimizer


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class ResearchSAM(torch.optim.Optimizer):
    """SAM, or GSAM when alpha > 0, the way the public research code writes it: a Python loop per parameter."""

    def __init__(self, params, rho: float, alpha: float, lr: float) -> None:
        super().__init__(params, dict(rho=rho, alpha=alpha, lr=lr))
        self.base_optimizer = torch.optim.SGD(self.param_groups, lr=lr, foreach=False)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self) -> None:
        norms = [p.grad.norm(p=2) for group in self.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.norm(torch.stack(norms), p=2)
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_g"] = p.grad.clone()
                e_w = p.grad * scale
                p.add_(e_w)
                self.state[p]["e_w"] = e_w
        self.zero_grad()

    @torch.no_grad()
    def second_step(self) -> None:
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        for p in params:
            p.sub_(self.state[p]["e_w"])
        alpha = self.param_groups[0]["alpha"]
        if alpha > 0:  # GSAM: remove alpha times the part of g orthogonal to g_p
            inner, new_sq, old_sq = 0.0, 0.0, 0.0
            for p in params:
                old_g = self.state[p]["old_g"]
                inner = inner + (old_g * p.grad).sum()
                new_sq = new_sq + p.grad.pow(2).sum()
                old_sq = old_sq + old_g.pow(2).sum()
            new_norm, old_norm = new_sq.sqrt(), old_sq.sqrt()
            cosine = inner / (new_norm * old_norm + 1e-12)
            for p in params:
                vertical = self.state[p]["old_g"] - cosine * old_norm * p.grad / (new_norm + 1e-12)
                p.grad.add_(vertical, alpha=-alpha)
        self.base_optimizer.step()
        self.zero_grad()


def research_optimizer(optimizer_cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The research code's optimizer with the cell's lr, rho and (GSAM) alpha."""
    lr = float(optimizer_cfg.lr)
    if optimizer_cfg.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, foreach=False)
    return ResearchSAM(
        model.parameters(), rho=float(optimizer_cfg.rho), alpha=float(optimizer_cfg.get("alpha", 0.0)), lr=lr
    )


def research_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, int]:
    """One step of the research loop, with its per-step host reads for the progress log."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    if isinstance(optimizer, ResearchSAM):
        loss.backward()
        optimizer.first_step()
        saved = [(bn, bn.momentum) for bn in _batchnorms(model)]
        for bn, _ in saved:  # the second pass must not move the running statistics
            bn.momentum = 0.0
        F.cross_entropy(model(images), labels).backward()
        for bn, momentum in saved:
            bn.momentum = momentum
        optimizer.second_step()
    else:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item(), (logits.argmax(1) == labels).sum().item()


# ----------------------------------------------------------------------------- the two steps, timed


@dataclass
class Settings:
    device: torch.device
    precision: str
    channels_last: bool
    compile: bool
    workers: int


def ours_runner(
    workload: Workload, optimizer_name: str, batch_size: int, stream: Iterator, settings: Settings
) -> Callable[[int], None]:
    """`run(steps)`: the runner's own epoch function over `steps` batches of `stream`."""
    torch.manual_seed(0)
    model = workload.make_model().to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = torch.compile(model) if settings.compile else model
    # The optimizer a cell of the table builds (SGD is SAM with rho = 0), from its config.
    optimizer = build_optimizer(paper_cell(workload.table, f"optimizer={optimizer_name}").optimizer, train_model)
    remember_initial_values(optimizer)
    schedule = Schedule([Stage(batch_size, 1)], train_size=10**9)  # constant lr; the size only bounds the batch
    loss_fn = nn.CrossEntropyLoss()

    def run(steps: int) -> None:
        train_epoch(
            train_model,
            optimizer,
            itertools.islice(stream, steps),
            schedule=schedule,
            first_step=0,
            loss_fn=loss_fn,
            precision=settings.precision,
            device=settings.device,
            channels_last=settings.channels_last,
        )  # ends with a host read: synchronised

    return run


def research_runner(
    workload: Workload, optimizer_name: str, stream: Iterator, settings: Settings
) -> Callable[[int], None]:
    """`run(steps)`: the research loop, fp32, a host read of loss and accuracy every step."""
    torch.manual_seed(0)
    model = workload.make_model().to(settings.device)
    optimizer = research_optimizer(paper_cell(workload.table, f"optimizer={optimizer_name}").optimizer, model)
    model.train()

    def run(steps: int) -> None:
        running_loss, correct = 0.0, 0
        for images, labels in itertools.islice(stream, steps):
            loss, hits = research_step(model, optimizer, images, labels)
            running_loss, correct = running_loss + loss, correct + hits

    return run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds for `steps` steps after `warmup` untimed ones (worker start-up, cudnn autotuning, first batches)."""
    run(warmup)
    synchronize(device)
    start = time.perf_counter()
    run(steps)
    synchronize(device)
    return time.perf_counter() - start


def make_stream(impl: str, workload: Workload, batch_size: int, settings: Settings, cache: dict) -> Iterator:
    """The batches one implementation trains on; datasets are built once and kept in `cache`."""
    if workload.device_data is None:
        return random_stream(workload, batch_size, settings.device, settings.channels_last and impl == "ours")
    key = workload.name + ("" if impl == "ours" else "/pil")
    if key not in cache:
        cache[key] = workload.device_data() if impl == "ours" else workload.pil_data()
    if impl == "ours":
        return device_stream(cache[key], batch_size)
    return pil_stream(cache[key], batch_size, settings.workers, settings.device)


def measure_step(
    impl: str,
    workload: Workload,
    optimizer_name: str,
    batch_size: int,
    settings: Settings,
    warmup: int,
    steps: int,
    cache: dict,
) -> float:
    """Images per second of one implementation's training step, data included; NaN when out of memory."""
    device = settings.device
    stream = make_stream(impl, workload, batch_size, settings, cache)
    try:
        if impl == "ours":
            run = ours_runner(workload, optimizer_name, batch_size, stream, settings)
        else:
            run = research_runner(workload, optimizer_name, stream, settings)
        seconds = time_steps(run, warmup, steps, device)
    except torch.cuda.OutOfMemoryError:
        log(f"  {impl} {workload.name} {optimizer_name} b{batch_size}: out of memory")
        return float("nan")
    finally:
        if hasattr(stream, "close"):  # itertools.repeat (model-only) has nothing to close
            stream.close()  # shuts the DataLoader's workers down before the next measurement
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return steps * batch_size / seconds


def measure_data(
    impl: str, workload: Workload, batch_size: int, settings: Settings, min_seconds: float, cache: dict
) -> float:
    """Images per second of the data pipeline alone, batches ready on the device."""
    device = settings.device
    stream = make_stream(impl, workload, batch_size, settings, cache)
    try:
        for _ in itertools.islice(stream, 3):  # workers started, first batches out
            pass
        synchronize(device)
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds:
            for batch, _ in itertools.islice(stream, 4):
                images += len(batch)
            synchronize(device)
        return images / (time.perf_counter() - start)
    finally:
        if hasattr(stream, "close"):
            stream.close()


# ----------------------------------------------------------------------------- reports


def median(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def fmt(value: float, digits: int = 0, suffix: str = "") -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}{suffix}"


def step_tables(rates: dict, workload: str, batch_sizes: list[int], optimizers: list[str]) -> list[str]:
    lines = [
        "| batch | optimizer | ours (img/s) | research-style (img/s) | ours / research |",
        "|---:|---|---:|---:|---:|",
    ]
    for batch_size in batch_sizes:
        for name in optimizers:
            ours, base = rates[("ours", workload, name, batch_size)], rates[("research", workload, name, batch_size)]
            ratio = median([a / b for a, b in zip(ours, base)])
            lines.append(
                f"| {batch_size} | {name} | {fmt(median(ours))} | {fmt(median(base))} | {fmt(ratio, 2, 'x')} |"
            )
    if "sgd" in optimizers and len(optimizers) > 1:
        others = [n for n in optimizers if n != "sgd"]
        lines += [
            "",
            "Step time relative to SGD (median of per-round ratios; two forward-backward passes: ~2):",
            "",
            "| batch | " + " | ".join(f"ours {n.upper()}/SGD | research {n.upper()}/SGD" for n in others) + " |",
            "|---:|" + "---:|" * (2 * len(others)),
        ]
        for batch_size in batch_sizes:
            cells = []
            for name in others:
                for impl in ("ours", "research"):
                    sgd, slow = rates[(impl, workload, "sgd", batch_size)], rates[(impl, workload, name, batch_size)]
                    cells.append(fmt(median([a / b for a, b in zip(sgd, slow)]), 2))
            lines.append(f"| {batch_size} | " + " | ".join(cells) + " |")
    return lines


def data_table(data_rates: dict, batch_sizes: list[int], workers: int) -> list[str]:
    lines = [
        f"| batch | DeviceLoader (img/s) | PIL DataLoader, {workers} workers (img/s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for batch_size in batch_sizes:
        ours, base = data_rates[("ours", batch_size)], data_rates[("research", batch_size)]
        ratio = median([a / b for a, b in zip(ours, base)])
        lines.append(f"| {batch_size} | {fmt(median(ours))} | {fmt(median(base))} | {fmt(ratio, 1, 'x')} |")
    return lines


# ----------------------------------------------------------------------------- projection


@dataclass(frozen=True)
class PaperTable:
    """A paper preset, and the workload whose rates project it (one per network and image size)."""

    name: str
    workload: str

    @property
    def train_size(self) -> int:
        return int(dataset_facts(self.name)["train_size"])


PAPER_TABLES = (
    PaperTable("cifar10_resnet18", "cifar_resnet18_w64"),
    PaperTable("cifar100_resnet18", "cifar_resnet18_w64"),
    PaperTable("cifar10_wrn28_10", "cifar_wrn28_10"),
    PaperTable("cifar100_wrn28_10", "cifar_wrn28_10"),
    PaperTable("tiny_imagenet_resnet18", "tiny_resnet18"),
    PaperTable("tiny_imagenet_wrn28_10", "tiny_wrn28_10"),
    PaperTable("imagenet_resnet50", "imagenet_resnet50"),
)


def table_cells(table: str, epochs: int) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(optimizer, schedule) -> (batch size, epochs) stages of each cell of the table's grid, `epochs` long.

    The stages are the ones the table's config builds (the increasing batch sizes
    split over the epochs by the schedule); cosine costs what constant costs.
    """
    optimizers, schedules = grid(table)
    stages = {}
    for schedule in schedules:
        cfg = paper_cell(table, f"schedule={schedule}", f"train.epochs={epochs}")
        stages[schedule] = [(int(stage["batch_size"]), int(stage["epochs"])) for stage in cfg.schedule.stages]
    return {(optimizer, schedule): stages[schedule] for optimizer in optimizers for schedule in schedules}


def cell_batch_sizes(tables: list[PaperTable], epochs: int) -> list[int]:
    """Every batch size a cell of these tables trains at, ascending: the rates a projection needs."""
    return sorted({batch for t in tables for stages in table_cells(t.name, epochs).values() for batch, _ in stages})


def cell_seconds(rate: Callable[[int], float], stages: list[tuple[int, int]], train_size: int) -> float:
    """Training time of one cell: every full batch of every epoch at the measured rate of its batch size."""
    return sum(epochs * (train_size // batch) * batch / rate(batch) for batch, epochs in stages)


def projection_table(rates: dict, tables: list[PaperTable], epochs: int) -> list[str]:
    lines = [
        "| table | train images | ours: 9 cells (h) | research-style: 9 cells (h) | speed-up "
        "| ours, slowest cell (h) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for table in tables:
        cells = table_cells(table.name, epochs)
        hours: dict[str, list[float]] = {}
        for impl in ("ours", "research"):
            hours[impl] = []
            for (name, _), stages in cells.items():

                def rate(batch: int, impl: str = impl, name: str = name) -> float:
                    return median(rates.get((impl, table.workload, name, batch), [float("nan")]))

                hours[impl].append(cell_seconds(rate, stages, table.train_size) / 3600)
        ours, research = sum(hours["ours"]), sum(hours["research"])  # NaN when a rate is missing
        slowest = max(hours["ours"]) if ours == ours else float("nan")
        lines.append(
            f"| {table.name} | {table.train_size:,} | {fmt(ours, 1)} | {fmt(research, 1)} "
            f"| {fmt(research / ours, 1, 'x')} | {fmt(slowest, 1)} |"
        )
    return lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    main_cell = paper_cell(MAIN_TABLE)
    optimizers, _ = grid(MAIN_TABLE)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:k]")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 width (default 16 on a CPU, 64 on a GPU)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[int(b) for b in main_cell.train.increasing_batch_sizes],
        help="default: the increasing-batch sizes of the paper presets",
    )
    parser.add_argument("--optimizers", nargs="+", choices=optimizers, default=optimizers)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 6 CPU, 30 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 CPU, 5 GPU)")
    parser.add_argument(
        "--min-images",
        type=int,
        default=None,
        help="more timed steps at small batches, to time at least this many images (256 CPU, 1024 GPU)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; tables give medians")
    parser.add_argument(
        "--train-size",
        type=int,
        default=int(dataset_facts(MAIN_TABLE)["train_size"]),
        help="examples in the fake CIFAR-10 (default: the real one's)",
    )
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the research-style baseline")
    parser.add_argument("--threads", type=int, default=None, help="main-process torch threads (default: torch's)")
    parser.add_argument("--data-seconds", type=float, default=0.5, help="time per data-pipeline measurement")
    parser.add_argument("--skip-data", action="store_true", help="leave out the data-pipeline table")
    parser.add_argument("--skip-train", action="store_true", help="leave out the training-step table")
    parser.add_argument("--precision", default="auto", help="ours: auto (bf16 on cuda, fp32 on cpu), fp32, bf16")
    parser.add_argument("--compile", action="store_true", help="ours: torch.compile the model (once per batch size)")
    parser.add_argument(
        "--project",
        nargs="+",
        default=[],
        metavar="TABLE",
        choices=["all"] + [t.name for t in PAPER_TABLES],
        help="paper tables to project, or all",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=int(main_cell.train.epochs),
        help="epochs of a cell in the projection (default: the paper presets' train.epochs)",
    )
    parser.add_argument("--project-steps", type=int, default=None, help="timed steps per projection measurement")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=8.0,
        help="stop measuring projection workloads after this much time in total",
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    args.width = args.width or (64 if cuda else 16)
    args.steps = args.steps or (30 if cuda else 6)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    args.min_images = args.min_images if args.min_images is not None else (1024 if cuda else 256)
    args.project_steps = args.project_steps or (10 if cuda else 2)
    if any(v <= 0 for v in [args.width, args.steps, args.rounds, args.train_size, *args.batch_sizes]):
        parser.error("width, steps, rounds, train size and batch sizes must be positive")
    if "all" in args.project:
        args.project = [t.name for t in PAPER_TABLES]
    return args


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores visible, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both: the runner sets it, and so does most research code
    settings = Settings(
        device,
        resolve_precision(args.precision, device),
        channels_last=device.type == "cuda",
        compile=args.compile,
        workers=args.workers,
    )
    folder = tempfile.TemporaryDirectory(prefix="bench_train_")
    root = write_fake_cifar10(Path(folder.name), args.train_size)
    main_workload = cifar_workload(
        f"cifar_resnet18_w{args.width}",
        MAIN_TABLE,
        table_model(MAIN_TABLE, f"model.width={args.width}"),
        root,
        args.train_size,
        device,
        settings.channels_last,
    )
    cache: dict = {}
    rates: dict = defaultdict(list)
    data_rates: dict = defaultdict(list)
    out = [
        f"# bench_train: {machine(device)}",
        "",
        f"`{' '.join(['bench/bench_train.py', *(argv if argv is not None else sys.argv[1:])])}`; ResNet-18 width "
        f"{args.width}, ours {settings.precision}{', channels_last' if settings.channels_last else ''}"
        f"{', compiled' if args.compile else ''}; research-style fp32; "
        f"{args.steps} timed steps (at least {args.min_images} images) after {args.warmup}, "
        f"{args.rounds} interleaved rounds, medians.",
        "",
    ]

    log("warming up (untimed): data loading, first allocations, kernel selection")
    if not args.skip_train:
        for impl in ("ours", "research"):
            measure_step(impl, main_workload, args.optimizers[-1], args.batch_sizes[0], settings, 1, 1, cache)
    for round_index in range(args.rounds):
        for b_index, batch_size in enumerate(args.batch_sizes):
            order = ("ours", "research") if (round_index + b_index) % 2 == 0 else ("research", "ours")
            if not args.skip_data:
                for impl in order:
                    rate = measure_data(impl, main_workload, batch_size, settings, args.data_seconds, cache)
                    data_rates[(impl, batch_size)].append(rate)
                    log(f"round {round_index} data {impl} b{batch_size}: {rate:,.0f} img/s")
            if args.skip_train:
                continue
            for o_index, name in enumerate(args.optimizers):
                for impl in order if o_index % 2 == 0 else order[::-1]:
                    steps = max(args.steps, -(-args.min_images // batch_size))
                    rate = measure_step(impl, main_workload, name, batch_size, settings, args.warmup, steps, cache)
                    rates[(impl, main_workload.name, name, batch_size)].append(rate)
                    log(f"round {round_index} {impl} {name} b{batch_size}: {rate:,.1f} img/s")

    if not args.skip_train:
        out += ["## Training step, end to end from the data", ""]
        out += step_tables(rates, main_workload.name, args.batch_sizes, args.optimizers) + [""]
    if not args.skip_data:
        out += ["## Data pipeline alone (crop + flip + normalise, batches on the device)", ""]
        out += data_table(data_rates, args.batch_sizes, args.workers) + [""]

    if args.project:
        tables = [t for t in PAPER_TABLES if t.name in args.project]
        skipped = project_workloads(tables, args, settings, root, main_workload, rates, cache, started)
        out += [
            f"## Projected training time per paper table on this device ({args.epochs} epochs, 9 cells, one seed)",
            "",
            f"Rates at batch sizes {', '.join(map(str, cell_batch_sizes(tables, args.epochs)))}, "
            f"{args.project_steps} timed steps, "
            "one round; training steps only (no evaluation, sharpness or start-up). ImageNet: model only, "
            "random batches on the device for both.",
            "",
        ]
        out += projection_table(rates, tables, args.epochs) + [""]
        if skipped:
            out += [
                f"{skipped} projection measurements were left out by --max-minutes {args.max_minutes:g}; "
                "their tables show n/a.",
                "",
            ]
    out.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(out)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    folder.cleanup()
    return 0


def project_workloads(
    tables: list[PaperTable],
    args: argparse.Namespace,
    settings: Settings,
    root: Path,
    main_workload: Workload,
    rates: dict,
    cache: dict,
    started: float,
) -> int:
    """Measure each table's workload at the paper's batch sizes, unless the main run already did.

    Returns how many measurements the time budget (`--max-minutes` since the start) left out.
    """
    device, cl = settings.device, settings.channels_last
    makers = {
        "cifar_resnet18_w64": lambda: cifar_workload(
            "cifar_resnet18_w64", "cifar10_resnet18", table_model("cifar10_resnet18"), root, args.train_size, device, cl
        ),
        "cifar_wrn28_10": lambda: cifar_workload(
            "cifar_wrn28_10", "cifar10_wrn28_10", table_model("cifar10_wrn28_10"), root, args.train_size, device, cl
        ),
        "tiny_resnet18": lambda: memory_workload("tiny_resnet18", "tiny_imagenet_resnet18", 8192, device, cl),
        "tiny_wrn28_10": lambda: memory_workload("tiny_wrn28_10", "tiny_imagenet_wrn28_10", 8192, device, cl),
        "imagenet_resnet50": lambda: model_only_workload("imagenet_resnet50", "imagenet_resnet50"),
    }
    deadline, skipped = started + 60 * args.max_minutes, 0
    for key in dict.fromkeys(t.workload for t in tables):
        workload = main_workload if key == main_workload.name else makers[key]()
        users = [t for t in tables if t.workload == key]
        optimizers = list(dict.fromkeys(o for t in users for o, _ in table_cells(t.name, args.epochs)))
        for batch_size in cell_batch_sizes(users, args.epochs):
            for name in optimizers:
                for impl in ("ours", "research"):
                    if rates.get((impl, key, name, batch_size)):
                        continue
                    if time.perf_counter() > deadline:
                        log(f"projection: time budget spent, {key} b{batch_size} {name} {impl} not measured")
                        skipped += 1
                        continue
                    steps = max(args.project_steps, -(-args.min_images // (4 * batch_size)))
                    rate = measure_step(impl, workload, name, batch_size, settings, 2, steps, cache)
                    rates[(impl, key, name, batch_size)].append(rate)
                    log(f"projection {key} {impl} {name} b{batch_size}: {rate:,.1f} img/s")
        cache.pop(key, None)  # free the workload's data before the next one
        cache.pop(key + "/pil", None)
    return skipped


if __name__ == "__main__":
    sys.exit(main())
