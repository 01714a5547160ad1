"""The orchestration of sweeps, without torch: `verdict` decides whether a cell trains."""
