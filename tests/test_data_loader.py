"""The torchvision-path loader: seeded order and augmentation, dropped partial batch, stages, repeats, ranks."""

from __future__ import annotations

import torch

from runner.data import SeededBatchSampler, build_dataset, build_loader

CFG = {
    "name": "synthetic",
    "num_classes": 4,
    "image_size": 8,
    "channels": 3,
    "train_size": 30,
    "test_size": 10,
    "seed": 0,
    "mean": [0.5] * 3,
    "std": [0.25] * 3,
    "augment": "crop_flip",
    "download": False,
}


def collect(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def train_loader(**kwargs):
    options = {"shuffle": True, "seed": 3, "drop_last": True, **kwargs}
    return build_loader(build_dataset(CFG, "train", augment=True), options.pop("batch_size", 8), **options)


def test_epoch_is_a_function_of_seed_and_epoch_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = collect(train_loader().batches(epoch=2))
    assert torch.equal(torch.get_rng_state(), state)  # the training step's RNG is untouched
    assert same(first, collect(train_loader().batches(epoch=2)))
    assert not same(first, collect(train_loader().batches(epoch=3)))
    assert not same(first, collect(train_loader(seed=4).batches(epoch=2)))


def test_workers_give_the_same_batches_and_batch_size_changes_between_stages():
    in_process = train_loader()
    with_worker = train_loader(num_workers=1)  # persistent worker kept across the stages
    for epoch, batch_size in ((0, 4), (1, 8), (2, 16)):
        expected = collect(in_process.batches(epoch, batch_size))
        assert same(collect(with_worker.batches(epoch, batch_size)), expected)
        assert [len(y) for _, y in expected] == [batch_size] * (30 // batch_size)  # last partial batch dropped
        assert with_worker.num_batches(batch_size) == 30 // batch_size


def test_start_batch_resumes_mid_epoch():
    loader = train_loader()
    full = collect(loader.batches(epoch=5, batch_size=4))
    assert same(collect(loader.batches(epoch=5, batch_size=4, start_batch=3)), full[3:])


def test_evaluation_order_keeps_everything():
    dataset = build_dataset(CFG, "test", augment=False)
    loader = build_loader(dataset, 4, shuffle=False, seed=0, drop_last=False)
    batches = collect(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(loader) == 3
    assert torch.equal(torch.cat([x for x, _ in batches]), torch.stack([dataset[i][0] for i in range(10)]))


def test_repeated_augmentation_is_several_passes_each_in_its_own_order():
    sampler = SeededBatchSampler(30, 6, shuffle=True, seed=0, drop_last=True, repeated_aug=3)
    indices, seeds = sampler.order(epoch=0)
    assert len(indices) == 90 and sampler.num_batches() == 15  # three passes, as the authors' RASampler
    passes = indices.view(3, 30)
    assert all(sorted(row.tolist()) == list(range(30)) for row in passes)
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[1], passes[2])
    # an image's repeats are spread over the epoch, not three in a row
    assert sum(int(indices[k] == indices[k + 1]) for k in range(89)) < 5
    assert len(set(seeds.tolist())) == 90  # each copy augmented differently
    loader = train_loader(batch_size=6, repeated_aug=3)
    images = torch.cat([x for x, _ in loader.batches(epoch=0)])
    order = loader.sampler.order(0)[0]
    copies = [images[order == k] for k in range(10)]
    assert all(len(c) == 3 for c in copies)
    differing = sum(not torch.equal(c[0], c[k]) for c in copies for k in (1, 2))
    assert differing >= 15  # of 20 pairs; only 18 crop/flip outcomes exist at 8 px, so a few may coincide


def test_ranks_split_one_permutation():
    parts = [
        SeededBatchSampler(30, 5, shuffle=True, seed=1, drop_last=True, rank=r, world_size=2).order(0)[0]
        for r in range(2)
    ]
    assert len(parts[0]) == len(parts[1]) == 15
    assert sorted(torch.cat(parts).tolist()) == list(range(30))
    padded = SeededBatchSampler(31, 5, shuffle=False, seed=1, drop_last=False, rank=1, world_size=2).order(0)[0]
    assert padded.tolist() == list(range(1, 31, 2)) + [0]  # wrapped to an even share, as DistributedSampler
