"""Layer stacks: found structurally (one in BERT, two in an encoder-decoder), numbered globally,
addressable per stack by --layers, and honoured by LoRA and selective fine-tuning."""

import pytest
import torch

from tunelab.config import RunConfig
from tunelab.errors import UserError
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext, count_params
from tunelab.methods.layers import parse_layers
from tunelab.models import find_layout


def tiny_whisper():
    """A randomly initialised 3 + 2 layer Whisper (no download)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=32, encoder_layers=3, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8,
                        max_source_positions=16, max_target_positions=16, vocab_size=100, pad_token_id=1,
                        bos_token_id=0, eos_token_id=2, decoder_start_token_id=3)
    return WhisperForConditionalGeneration(cfg)


@pytest.fixture(scope="module")
def whisper():
    return tiny_whisper()


def test_encoder_decoder_has_two_stacks_numbered_globally(whisper):
    lay = find_layout(whisper)
    assert [(s.name, s.path, s.num_layers, s.offset) for s in lay.stacks] == [
        ("encoder", "model.encoder.layers", 3, 0), ("decoder", "model.decoder.layers", 2, 3)]
    assert lay.num_layers == 5
    assert lay.classify("model.encoder.layers.2.fc1.weight") == ("layer", 2)
    assert lay.classify("model.decoder.layers.0.fc1.weight") == ("layer", 3)
    # every parameter of both stacks is counted once (an independent count over the modules)
    per_layer = {}
    for n, p in whisper.named_parameters():
        k = lay.classify(n)
        if isinstance(k, tuple):
            per_layer[k[1]] = per_layer.get(k[1], 0) + p.numel()
    enc = sum(p.numel() for p in whisper.model.encoder.layers.parameters())
    dec = sum(p.numel() for p in whisper.model.decoder.layers.parameters())
    assert sum(per_layer[i] for i in range(3)) == enc and sum(per_layer[i] for i in (3, 4)) == dec


def test_layer_selection_per_stack(whisper):
    lay = find_layout(whisper)
    assert parse_layers("encoder:top:2,decoder:0", lay) == [1, 2, 3]
    assert parse_layers("top:1", lay) == [2, 4]  # no stack named: each stack alike
    assert parse_layers("decoder:0-1", lay) == [3, 4]
    assert parse_layers("encoder:0,2", lay) == [0, 2]  # parts after a named one stay in its stack
    with pytest.raises(UserError, match="unknown layer stack 'decodr'"):
        parse_layers("decodr:0", lay)
    with pytest.raises(UserError, match="stack decoder has 2 layers"):
        parse_layers("decoder:top:3", lay)
    assert parse_layers("top:2", 6) == [4, 5]  # one unnamed stack (a plain layer count)


def _prepare(model, method, **opts):
    cfg = RunConfig(task="sst2", method=method, lr=1e-3, **opts)
    lay = find_layout(model)
    m = get_method(method)()
    return m.prepare(model, PrepareContext(cfg=cfg, layout=lay, peft_task_type="SEQ_2_SEQ_LM",
                                           model_type=model.config.model_type)), lay


def test_lora_adapters_only_in_the_chosen_layers_of_each_stack():
    model, lay = _prepare(tiny_whisper(), "lora", layers="encoder:top:1,decoder:0")
    with_lora = {lay.classify(n)[1] for n, p in model.named_parameters() if "lora_" in n}
    assert with_lora == {2, 3}
    targets = {n.split(".lora_A")[0].split(".")[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert targets == {"q_proj", "v_proj"}  # the default targets for Whisper


def test_selective_trains_the_chosen_layers_of_both_stacks():
    model, lay = _prepare(tiny_whisper(), "selective", layers="top:1")
    assert count_params(model, lay)["trainable_layers"] == [2, 4]
