"""The training of one grid cell: `run` (its lifecycle: decide, lock, resume, train, record),
`build` (model, optimizer, schedule and data, in a fixed order), `epochs` and `steps` (the
epochs, and the steps of one epoch), `preemption`, `schedule`, `pipeline` and `device_loader`,
`checkpoint` and `checkpoint_fit`, `distributed`, `records` and `debug`. These modules use torch;
what happens around a cell (whether it trains, its lock, the sweep) is runner.sweep's.
"""
