"""The `convserve` command's entry point: the engine's process settings first, then the CLI.

OpenBLAS reads its kernel choice when NumPy loads, and the CLI imports NumPy, so the settings a
serving process wants are applied here, before service.cli is imported.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from service.runtime import tune_process

    tune_process()
    from service.cli import main as cli_main

    return cli_main(argv)
