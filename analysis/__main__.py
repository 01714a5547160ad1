"""`python -m analysis FOLDER`: see `analysis.cli`."""

from .cli import main

raise SystemExit(main())
