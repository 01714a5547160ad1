"""A sam-sweeps extension in a package of its own (registered through pyproject.toml's entry points).

- `models.mlp`: a multilayer perceptron over the flattened image (`model=mlp`);
- `data.load_blobs`: scikit-learn's Gaussian blobs drawn as 8x8 images (`dataset=blobs`);
- `schedules.exponential`: an lr policy decaying geometrically to `min_lr_ratio` (`schedule=exponential`);
  `conf/schedule/cosine_warm.yaml` is a schedule made of configuration alone;
- `optim.ExtraSAM`: a SAM variant stepping beyond the perturbed gradient (`optimizer=extrasam`);
- `measures.FIRST_ORDER`: rho times the gradient norm, the first-order worst-case l2 sharpness
  (`sharpness=first_order`).
"""
