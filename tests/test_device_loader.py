"""The device pipeline draws from the torchvision recipe's distribution and is a pure function of (seed, epoch).

Statistical tests use fixed seeds, so each is deterministic: it either always
passes or always fails. The pixel tests compare with torchvision's own PIL
transforms bit for bit, so the two loaders are interchangeable for training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats
from torchvision import transforms as T

from runner.data.loader import SeededBatchSampler
from runner.training.device_loader import DeviceLoader

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
PAD = 4
SIZE = 32


def random_images(count: int, channels: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)


def coded_images(count: int) -> torch.Tensor:
    """Pixels that say where they came from: channel 0 holds row + 1, channel 1 column + 1 (0 is padding)."""
    images = torch.zeros(count, 3, SIZE, SIZE, dtype=torch.uint8)
    images[:, 0] = torch.arange(1, SIZE + 1, dtype=torch.uint8).view(SIZE, 1)
    images[:, 1] = torch.arange(1, SIZE + 1, dtype=torch.uint8).view(1, SIZE)
    images[:, 2] = (torch.arange(count) % 250 + 1).to(torch.uint8).view(count, 1, 1)
    return images


def loader(images: torch.Tensor, *, augment: bool = True, seed: int = 0, **kwargs) -> DeviceLoader:
    labels = torch.arange(len(images))  # a label is its example's index, so batches show which examples they hold
    return DeviceLoader(images, labels, mean=MEAN, std=STD, augment=augment, pad=PAD, device="cpu", seed=seed, **kwargs)


def to_pixels(batch: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: back to integer pixel values."""
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    return torch.round((batch * std + mean) * 255).to(torch.int64)


def decode_crops(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, flipped) of each image of a batch of `coded_images`, read off its pixels.

    The centre pixel is never padding (the shift is at most `PAD`), so its
    coordinates give the window's corner; the next pixel to the right says
    whether the columns run backwards (a flipped image).
    """
    pixels = to_pixels(batch)
    centre = SIZE // 2
    row = pixels[:, 0, centre, centre] - 1  # source row of output row `centre`
    col = pixels[:, 1, centre, centre] - 1
    flipped = pixels[:, 1, centre, centre + 1] < pixels[:, 1, centre, centre]
    top = row - centre + PAD
    # flipped: output column c shows window column SIZE - 1 - c
    left = torch.where(flipped, col - (SIZE - 1 - centre) + PAD, col - centre + PAD)
    return top, left, flipped


def reference(image: torch.Tensor, top: int, left: int, flipped: bool) -> torch.Tensor:
    """torchvision on the PIL image: pad with zeros, crop at (top, left), maybe mirror, ToTensor, Normalize."""
    pixels = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(pixels[..., 0] if image.shape[0] == 1 else pixels)
    size = image.shape[-1]
    cropped = TF.crop(TF.pad(pil, PAD, fill=0), top, left, size, size)
    if flipped:
        cropped = TF.hflip(cropped)
    mean, std = MEAN[: image.shape[0]], STD[: image.shape[0]]
    return T.Normalize(mean, std)(T.ToTensor()(cropped))


def decoded_epochs(epochs: int, count: int = 2048, batch_size: int = 256) -> tuple[torch.Tensor, ...]:
    """(top, left, flipped) of every crop of `epochs` epochs, read off the pixels and checked against the plan."""
    data = loader(coded_images(count), seed=7)
    tops, lefts, flips = [], [], []
    for epoch in range(epochs):
        plan = data.plan(epoch)
        start = 0
        for images, _ in data.batches(epoch, batch_size):
            top, left, flipped = decode_crops(images)
            # the pixels show exactly the plan's draws: the plan is what gets applied
            end = start + len(images)
            assert torch.equal(top, plan.tops[start:end]) and torch.equal(left, plan.lefts[start:end])
            assert torch.equal(flipped, plan.flips[start:end])
            start = end
            tops.append(top), lefts.append(left), flips.append(flipped)
    return torch.cat(tops), torch.cat(lefts), torch.cat(flips)


def test_crop_offsets_are_uniform_over_the_81_positions() -> None:
    tops, lefts, flips = decoded_epochs(epochs=8)  # 16384 crops, about 200 per offset
    positions = (2 * PAD + 1) ** 2
    counts = torch.bincount(tops * (2 * PAD + 1) + lefts, minlength=positions)
    assert len(counts) == positions and int(counts.min()) > 0, "an offset was never drawn (off-by-one in the range?)"
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    # offset and flip are independent: uniform over the 162 (offset, flip) cells too
    joint = torch.bincount((tops * (2 * PAD + 1) + lefts) * 2 + flips.long(), minlength=2 * positions)
    assert stats.chisquare(joint.numpy()).pvalue > 1e-3


def test_flip_rate_is_one_half() -> None:
    _, _, flips = decoded_epochs(epochs=4)
    trials, flipped = len(flips), int(flips.sum())
    # within 4 standard deviations of a fair coin, and an exact binomial test
    assert abs(flipped - trials / 2) <= 4 * math.sqrt(trials / 4)
    assert stats.binomtest(flipped, trials, 0.5).pvalue > 1e-3


def test_random_crop_is_pad_then_crop_at_its_drawn_offset() -> None:
    """The reference below (pad, crop at an offset) is what torchvision's RandomCrop does for the offset it draws."""
    image = Image.fromarray(random_images(1)[0].permute(1, 2, 0).numpy())
    padded = TF.pad(image, PAD, fill=0)
    for seed in range(30):
        torch.manual_seed(seed)
        top, left, _, _ = T.RandomCrop.get_params(padded, (SIZE, SIZE))
        torch.manual_seed(seed)
        drawn = T.RandomCrop(SIZE, padding=PAD)(image)
        assert np.array_equal(np.asarray(drawn), np.asarray(TF.crop(padded, top, left, SIZE, SIZE)))
    assert np.array_equal(np.asarray(T.RandomHorizontalFlip(p=1.0)(image)), np.asarray(TF.hflip(image)))


def test_crops_equal_torchvision_pixel_for_pixel() -> None:
    images = random_images(600, seed=1)
    data = loader(images, seed=3)
    plan = data.plan(2)
    seen = set()
    position = 0
    for batch, labels in data.batches(2, 100):
        for image, label in zip(batch, labels):
            top, left, flipped = int(plan.tops[position]), int(plan.lefts[position]), bool(plan.flips[position])
            assert int(label) == int(plan.order[position])
            assert torch.equal(image, reference(images[int(label)], top, left, flipped)), (top, left, flipped)
            seen.add((top, left, flipped))
            position += 1
    assert len(seen) > 140  # most of the 162 (offset, flip) cases were compared


def test_without_the_flip_the_same_crops_are_cut_unmirrored() -> None:
    """`flip=False` (dataset.augment=crop) cuts the crops a seed cuts with the flip on, none of them mirrored."""
    images = random_images(200, seed=5)
    mirrored, plain = loader(images, seed=3), loader(images, seed=3, flip=False)
    plan = plain.plan(1)
    position = 0
    for (with_flip, labels), (without, same_labels) in zip(mirrored.batches(1, 50), plain.batches(1, 50)):
        assert torch.equal(labels, same_labels)
        for a, b, label in zip(with_flip, without, labels):
            top, left = int(plan.tops[position]), int(plan.lefts[position])
            assert torch.equal(b, reference(images[int(label)], top, left, flipped=False))
            assert torch.equal(a, b.flip(-1) if plan.flips[position] else b)
            position += 1
    assert 0 < int(plan.flips.sum()) < len(images)  # both kinds were compared


def test_evaluation_batches_equal_normalize_to_tensor_in_order() -> None:
    images = random_images(70, seed=2)
    data = loader(images, augment=False)
    batches = list(data.batches(0, 32))
    assert [len(labels) for _, labels in batches] == [32, 32, 6]  # no shuffle, last partial batch kept
    normalise = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    expected = torch.stack([normalise(Image.fromarray(image.permute(1, 2, 0).numpy())) for image in images])
    assert torch.equal(torch.cat([x for x, _ in batches]), expected)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(70))


def test_single_channel_small_images_match_torchvision() -> None:
    """The digits dataset: 1 channel, 8 px, padding 1."""
    images = random_images(40, channels=1, size=8, seed=4)
    data = DeviceLoader(images, torch.arange(40), mean=MEAN[:1], std=STD[:1], augment=True, pad=1, device="cpu", seed=0)
    plan = data.plan(0)
    for position, (image, label) in enumerate(zip(*next(iter(data.batches(0, 40))))):
        pil = Image.fromarray(images[int(label), 0].numpy())
        cropped = TF.crop(TF.pad(pil, 1, fill=0), int(plan.tops[position]), int(plan.lefts[position]), 8, 8)
        if plan.flips[position]:
            cropped = TF.hflip(cropped)
        assert torch.equal(image, T.Normalize(MEAN[:1], STD[:1])(T.ToTensor()(cropped)))
    assert int(plan.tops.max()) <= 2 and int(plan.lefts.max()) <= 2


def test_every_example_appears_once_per_epoch() -> None:
    data = loader(random_images(1000))
    for batch_size in (64, 100, 128):
        labels = torch.cat([y for _, y in data.batches(5, batch_size)])
        kept = (1000 // batch_size) * batch_size
        assert len(labels) == kept and len(torch.unique(labels)) == kept
    everything = torch.cat([y for _, y in data.batches(5, 100)])
    assert torch.equal(torch.sort(everything).values, torch.arange(1000))


def test_epochs_differ_and_seeds_repeat() -> None:
    images = random_images(500)
    first, again, other_seed = loader(images, seed=11), loader(images, seed=11), loader(images, seed=12)
    for (x1, y1), (x2, y2) in zip(first.batches(3, 50), again.batches(3, 50), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    order = lambda data, epoch: torch.cat([y for _, y in data.batches(epoch, 50)])  # noqa: E731
    assert not torch.equal(order(first, 3), order(first, 4))
    assert not torch.equal(order(first, 3), order(other_seed, 3))
    plan3, plan4 = first.plan(3), first.plan(4)
    assert not torch.equal(plan3.tops, plan4.tops) and not torch.equal(plan3.flips, plan4.flips)


def test_order_is_the_torchvision_paths_order() -> None:
    """Both loaders visit an epoch's examples in the same order; switching loaders changes only the augmentation."""
    data = loader(random_images(300), seed=5)
    sampler = SeededBatchSampler(300, 30, shuffle=True, seed=5, drop_last=True)
    for epoch in (0, 1, 9):
        assert torch.equal(data.plan(epoch).order, sampler.order(epoch)[0])


def test_resume_at_start_batch_reproduces_the_rest_of_the_epoch() -> None:
    data = loader(random_images(400), seed=2)
    uninterrupted = list(data.batches(6, 32))
    for start in (0, 1, 5, len(uninterrupted)):
        resumed = list(loader(random_images(400), seed=2).batches(6, 32, start_batch=start))
        assert len(resumed) == len(uninterrupted) - start
        for (x1, y1), (x2, y2) in zip(uninterrupted[start:], resumed, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_batch_size_changes_between_calls_without_rebuilding() -> None:
    data = loader(random_images(512), seed=1)
    for epoch, batch_size in enumerate((16, 32, 64, 128, 256)):
        batches = list(data.batches(epoch, batch_size))
        assert len(batches) == data.num_batches(batch_size) == 512 // batch_size
        assert all(x.shape == (batch_size, 3, SIZE, SIZE) and y.shape == (batch_size,) for x, y in batches)
    # the plan does not depend on the batch size: the same epoch cut two ways gives the same stream
    small = torch.cat([x for x, _ in data.batches(9, 16)])
    large = torch.cat([x for x, _ in data.batches(9, 64)])
    assert torch.equal(small, large)


def test_drop_last() -> None:
    images = random_images(100)
    train, evaluation = loader(images), loader(images, augment=False)
    assert train.num_batches(32) == 3 and [len(y) for _, y in train.batches(0, 32)] == [32, 32, 32]
    assert evaluation.num_batches(32) == 4 and [len(y) for _, y in evaluation.batches(0, 32)] == [32, 32, 32, 4]
    keep = loader(images, drop_last=False)
    assert [len(y) for _, y in keep.batches(0, 32)] == [32, 32, 32, 4]
    assert len(torch.unique(torch.cat([y for _, y in keep.batches(0, 32)]))) == 100
    # training without augmentation still shuffles and drops
    plain = loader(images, augment=False, shuffle=True)
    labels = torch.cat([y for _, y in plain.batches(0, 32)])
    assert len(labels) == 96 and not torch.equal(labels, torch.arange(96))
    assert len(train) == 100


def test_channels_last_output() -> None:
    images = random_images(64)
    dense = next(iter(loader(images, seed=4).batches(0, 32)))[0]
    strided = next(iter(loader(images, seed=4, channels_last=True).batches(0, 32)))[0]
    assert strided.is_contiguous(memory_format=torch.channels_last)
    assert dense.is_contiguous() and torch.equal(dense, strided)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: loader(random_images(8).float()), "uint8"),
        (lambda: DeviceLoader(random_images(8), torch.arange(7), mean=MEAN, std=STD, augment=True), "labels"),
        (lambda: DeviceLoader(random_images(8), torch.arange(8), mean=MEAN[:2], std=STD, augment=True), "per channel"),
        (lambda: DeviceLoader(random_images(8), torch.arange(8), mean=MEAN, std=(1, 0, 1), augment=True), "positive"),
        (lambda: DeviceLoader(random_images(8), torch.arange(8), mean=MEAN, std=STD, augment=True, pad=-1), "pad"),
        (lambda: loader(random_images(8)).batches(0, 16), "larger than"),  # raised at the call
        (lambda: loader(random_images(8)).batches(0, 4, start_batch=3), "start_batch"),
        (lambda: loader(random_images(8)).num_batches(0), "batch_size"),
    ],
)
def test_bad_input_is_a_value_error(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_repeat_and_match_torchvision() -> None:
    images = random_images(256, seed=6)
    make = lambda: DeviceLoader(  # noqa: E731
        images, torch.arange(256), mean=MEAN, std=STD, augment=True, pad=PAD, device="cuda", seed=1
    )
    first, again = list(make().batches(0, 64)), list(make().batches(0, 64))
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert x1.is_cuda and torch.equal(x1, x2) and torch.equal(y1, y2)
    plan = make().plan(0)
    batch, labels = first[0]
    for position in range(64):
        expected = reference(
            images[int(labels[position])],
            int(plan.tops[position]),
            int(plan.lefts[position]),
            bool(plan.flips[position]),
        )
        torch.testing.assert_close(batch[position].cpu(), expected, rtol=0, atol=1e-6)
