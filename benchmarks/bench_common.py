"""What the benchmark scripts share: the command line that made a table, the machine line, and
appending a section to BENCHMARKS.md."""

import os
import platform
import shlex
import sys
import time


def command_line(script: str, argv=None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in args)


def machine_line(threads) -> str:
    import torch

    return (f"Date {time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {threads or 'default'} threads")


def append_section(path: str, lines: list) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"appended to {path}")
