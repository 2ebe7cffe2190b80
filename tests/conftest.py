"""Shared fixtures: where the shared data lives, and small helpers to run tunelab in-process."""

import os
from pathlib import Path

import pytest

import tunelab.tasks  # noqa: F401  registers the loader of every method's and family's options, so that
#                       RunConfig(...) / config.FIELDS in a test hold them all (config.load_options)

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


@pytest.fixture(scope="session")
def bbc_dir(shared_data) -> str:
    """BBC News (folder per category) in the shared data."""
    d = shared_data / "news" / "bbc"
    if not (d / "sport").is_dir():
        pytest.fail(f"BBC data not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return str(d)


@pytest.fixture(scope="session")
def kp_root(shared_data) -> Path:
    """The keyphrase sets (Inspec, KDD, WWW) in the shared data."""
    d = shared_data / "keyphrase"
    if not (d / "Inspec" / "docsutf8").is_dir():
        pytest.fail(f"keyphrase data not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return d


def tiny_run_args(task: str, method: str, data_dir: str, out: str, *extra: str) -> list:
    """CLI args for a ~64-example run on minilm (seconds on 2 cores)."""
    return ["run", "--task", task, "--method", method, "--model", "minilm", "--data-dir", data_dir,
            "--output-dir", out, "--max-train-samples", "64", "--max-eval-samples", "64",
            "--epochs", "1", "--batch-size", "16", "--seed", "0", *extra]


# --- alignment tests: a tiny randomly initialised Llama with SmolLM2's real tokenizer ---

@pytest.fixture(scope="session")
def hh_data_dir() -> str:
    d = SHARED_DATA / "hh-rlhf"
    if not (d / "helpful-base").is_dir():
        pytest.fail(f"hh-rlhf data not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return str(d)


@pytest.fixture(scope="session")
def alignment_cache(tmp_path_factory):
    """A private $TUNELAB_CACHE for the session (judges, base evaluations); the converted smollm2
    folder from the user's cache is reused when it exists (read only)."""
    old = os.environ.get("TUNELAB_CACHE")
    user_cache = old or os.path.join(os.path.expanduser("~"), ".cache", "tunelab")
    d = tmp_path_factory.mktemp("tunelab-cache")
    os.environ["TUNELAB_CACHE"] = str(d)
    yield {"dir": str(d), "user_cache": user_cache}
    if old is None:
        os.environ.pop("TUNELAB_CACHE", None)
    else:
        os.environ["TUNELAB_CACHE"] = old


@pytest.fixture(scope="session")
def smollm2_tokenizer(alignment_cache):
    """SmolLM2's tokenizer (49152 tokens, byte-level BPE) from the converted cache or the GGUF."""
    import glob

    from transformers import AutoTokenizer

    from tunelab.tasks.alignment.smollm2 import gguf_file

    done = glob.glob(os.path.join(alignment_cache["user_cache"], "smollm2", "*", "tokenizer.json"))
    if done:
        return AutoTokenizer.from_pretrained(os.path.dirname(done[0]))
    path, _ = gguf_file()
    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised 2-layer Llama (hidden 32) saved as a HF folder: fast, real architecture."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    d = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


# --- compare / report (tests/compare_helpers.py) ---
@pytest.fixture(scope="session")
def compare_study(tmp_path_factory, glue_data_dir) -> dict:
    """A real compare study (sst2; full + LoRA r=4 + LoRA r=16 labelled variants; seeds 0 and 1;
    48 examples, 2 runs at a time) run as a `tunelab compare` process, SIGKILLed mid-grid, then run again."""
    from compare_helpers import build_study

    return build_study(tmp_path_factory.mktemp("compare-study"), glue_data_dir)
