"""The sweep runner: builds one grid cell from a composed config and trains it.

`runner.run(cfg)` is the only entry point `launch.py` needs; the submodules each
do one job (models, data, schedule, training loop, checkpoints, records).
"""
