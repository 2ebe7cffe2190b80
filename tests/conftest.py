"""Shared fixtures: where the shared data lives, and small helpers to run tunelab in-process."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUNELAB_SHARED_DATA", REPO.parent / "shared" / "data"))


def glue_dir() -> str:
    d = os.environ.get("TUNELAB_DATA_DIR") or str(SHARED_DATA / "glue")
    return d


@pytest.fixture(scope="session")
def glue_data_dir() -> str:
    d = glue_dir()
    if not Path(d, "SST-2").is_dir():
        pytest.fail(f"GLUE data not found at {d}: set TUNELAB_DATA_DIR to the shared glue folder")
    return d


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


def tiny_run_args(task: str, method: str, data_dir: str, out: str, *extra: str) -> list:
    """CLI args for a ~64-example run on minilm (seconds on 2 cores)."""
    return ["run", "--task", task, "--method", method, "--model", "minilm", "--data-dir", data_dir,
            "--output-dir", out, "--max-train-samples", "64", "--max-eval-samples", "64",
            "--epochs", "1", "--batch-size", "16", "--seed", "0", *extra]
