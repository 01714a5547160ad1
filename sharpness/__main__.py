"""`python -m sharpness <run folder | results root | glob> sharpness=<measure> ...` (see sharpness.cli)."""

from .cli import main

raise SystemExit(main())
