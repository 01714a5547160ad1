"""`python -m sharpness ...`: the re-measuring command of `runner.remeasure`, under its familiar name.

Re-measuring rebuilds a saved run's data and model, which is the runner's job,
and the measures must not depend on the runner; so the runner is imported here,
inside `main`, and `import sharpness` never loads it.
"""


def main() -> int:
    """Run `runner.remeasure.cli.main` on the command line; its exit status."""
    from runner.remeasure.cli import main as remeasure_main

    return remeasure_main()


if __name__ == "__main__":
    raise SystemExit(main())
