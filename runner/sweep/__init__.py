"""The orchestration of sweeps: everything that happens around the training of a cell, without torch.

Which folder a config belongs in (`identity`), whether it can run (`validate`, `value_checks`,
`options`, `registry`), whether a cell trains (`verdict`, `cell_state`, `lock`), the Hydra
sweeper, preflight, launchers and callbacks that plan, launch and summarize a sweep
(`sweeper`, `search`, `objective`, `preflight`, `launchers`, `summary`, `launch`), and
what a sweep looks like while it runs (`status`, `live`, `live_text`); where conf/ is and its
resolvers (`config_dir`, `config_resolvers`), and what stopped a command (`failures`). None of these modules
imports torch when imported (tests/test_package_deps.py checks it in a fresh interpreter);
what needs torch to check a value (a model's constructor, a dataset's files) imports it
inside the function that checks. The training of one cell is runner.training's.
"""
