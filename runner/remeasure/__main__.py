"""`python -m runner.remeasure <run folder | results root | glob> sharpness=<measure> ...` (see its cli)."""

from .cli import main

raise SystemExit(main())
