"""Prompt tuning's initialisation (--prompt-init / --prompt-init-text): the virtual tokens start at
the embedding rows of the text's tokens (or of vocabulary tokens), checked against an independently
loaded tokenizer and a fresh copy of the model's embedding matrix; the options are the prompt
method's alone."""

import pytest
import torch
from transformers import AutoTokenizer

from tunelab.cli import main
from tunelab.resolve import build_config
from tunelab.errors import UserError
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext
from tunelab.models import load_backbone
from tunelab.models.aliases import resolve_model
from tunelab.train.loop import seed_everything

TEXT = "Is the sentiment of this review positive or negative?"


def prompt_model(**opts):
    cfg = build_config({"task": "sst2", "method": "prompt", **opts})
    m = get_method("prompt")()
    m.validate(cfg)
    seed_everything(0)
    model, _, layout, _ = load_backbone("minilm", "classification", 2)
    words = model.get_input_embeddings().weight.detach().clone()  # before PEFT touches anything
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    virtual = model.prompt_encoder["default"].embedding.weight.detach()
    return virtual, words, model


def expected_ids(text: str, n: int) -> list:
    """The text's token ids ([CLS] ... [SEP]) repeated, then cut, to n (Lester et al.'s text init)."""
    ids = AutoTokenizer.from_pretrained(resolve_model("minilm"))(text)["input_ids"]
    return (ids * (n // len(ids) + 1))[:n]


@pytest.mark.parametrize("n", [8, 30])  # 8 < the text's 12 tokens (cut); 30 > 12 (repeated)
def test_text_init_copies_the_texts_token_embeddings(n):
    virtual, words, model = prompt_model(prompt_init="text", prompt_init_text=TEXT, num_virtual_tokens=n)
    ids = expected_ids(TEXT, n)
    assert len(set(ids)) > 5 and virtual.shape == (n, words.shape[1])
    assert torch.equal(virtual, words[ids])
    assert virtual.requires_grad is False and model.prompt_encoder["default"].embedding.weight.requires_grad
    # the frozen vocabulary is untouched
    assert torch.equal(model.get_input_embeddings().weight.detach(), words)


def test_vocab_init_rows_are_vocabulary_rows_and_random_init_is_not():
    virtual, words, _ = prompt_model(prompt_init="vocab")
    assert all((words == row).all(dim=1).any() for row in virtual)
    virtual, words, _ = prompt_model(prompt_init="random")
    assert not any((words == row).all(dim=1).any() for row in virtual)


@pytest.mark.parametrize("opts,needle", [
    ({"prompt_init": "text"}, "--prompt-init text needs --prompt-init-text"),
    ({"prompt_init_text": TEXT}, "--prompt-init-text is only used with --prompt-init text"),
    ({"prompt_init": "words"}, "--prompt-init"),
])
def test_prompt_init_option_checks(opts, needle):
    with pytest.raises(UserError) as e:
        prompt_model(**opts)
    assert needle in str(e.value)


@pytest.mark.parametrize("args", [["--prompt-init", "text", "--prompt-init-text", TEXT], ["--prompt-init", "vocab"]])
def test_prompt_init_is_refused_for_other_methods(args, tmp_path, capsys, glue_data_dir):
    out = tmp_path / "run"
    rc = main(["run", "--task", "sst2", "--method", "lora", "--data-dir", glue_data_dir, "--output-dir", str(out),
               *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--prompt-init" in err and "prompt" in err
    assert not out.exists()


def test_vocab_default_changes_the_cell_hash_so_cached_random_init_runs_rerun():
    from tunelab.compare.grid import config_hash

    prompt = build_config({"task": "sst2", "method": "prompt"})
    assert prompt.prompt_init == "vocab" and prompt.sources["prompt_init"] == "method"
    old = dict(prompt.as_dict(), prompt_init="random")  # what a prompt run made before the option existed
    assert config_hash(prompt.as_dict()) != config_hash(old)
    lora = build_config({"task": "sst2", "method": "lora"}).as_dict()  # other methods' hashes are unchanged
    assert config_hash(lora) == config_hash({k: v for k, v in lora.items() if k != "prompt_init"})
