"""hh-rlhf / Alpaca loading and truncation for the alignment tasks."""

import gzip
import json
import os

import pytest

from tunelab.tasks.alignment.data import tokenize_pairs, truncate_prompt
from tunelab.errors import UserError
from tunelab.tasks.alignment.instruction import load_instructions
from tunelab.tasks.alignment.preference import load_pairs, split_dialogues


def test_prompt_is_common_prefix_up_to_last_assistant_turn():
    shared = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: what is 2+2?\n\nAssistant:"
    p, c, r = split_dialogues(shared + " 4", shared + " 5, I think")
    assert (p, c, r) == (shared, " 4", " 5, I think")
    # dialogues that diverge in an earlier turn: the prompt stops at the last *shared* Assistant turn
    a = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: x\n\nAssistant: y"
    b = "\n\nHuman: hi\n\nAssistant: hey there\n\nHuman: x\n\nAssistant: z"
    p, c, r = split_dialogues(a, b)
    assert p == "\n\nHuman: hi\n\nAssistant:" and c == " hello\n\nHuman: x\n\nAssistant: y"
    assert split_dialogues("\n\nHuman: a", "\n\nHuman: b") is None


def test_local_split_is_fixed_disjoint_and_complete(hh_data_dir):
    tr, files, info = load_pairs("train", hh_data_dir, None, 0.1)
    ev, files2, _ = load_pairs("validation", hh_data_dir, "helpful-base", 0.1)
    assert files == files2 and len(files) == 1 and next(iter(files)).endswith("helpful-base/test.jsonl.gz")
    # 2354 rows upstream, 2 with identical responses are skipped (counted in info)
    assert info["skipped"]["identical_responses"] == 2
    assert len(tr) + len(ev) == 2352 and len(ev) == 235
    assert not {e.line for e in tr} & {e.line for e in ev}
    assert [e.line for e in load_pairs("validation", hh_data_dir, None, 0.1)[0]] == [e.line for e in ev]
    with gzip.open(next(iter(files)), "rt", encoding="utf-8") as f:
        rows = f.read().splitlines()
    e = ev[3]
    row = json.loads(rows[e.line - 1])
    assert e.prompt.endswith("\n\nAssistant:") and row["chosen"] == e.prompt + e.chosen
    assert row["rejected"] == e.prompt + e.rejected


def test_subset_resolution_and_errors(tmp_path, hh_data_dir):
    # the shared data root works too (hh-rlhf/<subset>), and another subset is found by name
    root = os.path.dirname(hh_data_dir)
    assert len(load_pairs("validation", root, "helpful-online", 0.1)[0]) > 0
    with pytest.raises(UserError, match="no hh-rlhf subset 'harmless-base'.*helpful-base"):
        load_pairs("train", hh_data_dir, "harmless-base", 0.1)
    bad = tmp_path / "mine"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: a\\n\\nAssistant: c"}\n'
                                     '{"chosen": 1}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: expected an object"):
        load_pairs("train", str(tmp_path), "mine", 0.1)
    (bad / "train.jsonl").write_text('{"chosen": "x", \n')
    with pytest.raises(UserError, match=r"train.jsonl:1: invalid JSON"):
        load_pairs("train", str(tmp_path), "mine", 0.1)


def test_alpaca_prompt_template_and_split(shared_data):
    tr, files, _ = load_instructions("train", str(shared_data / "alpaca"), 0.1)
    ev, _, _ = load_instructions("validation", str(shared_data), 0.1)
    assert len(tr) + len(ev) == 4998 and len(ev) == 500  # 2 of the 5000 rows have an empty output
    assert all(e.prompt.endswith("### Response:\n") and e.rejected is None for e in tr[:50])
    assert any("### Input:" in e.prompt for e in tr[:50]) and any("### Input:" not in e.prompt for e in tr[:50])


def test_truncation_keeps_prompt_tail_from_a_turn_boundary(smollm2_tokenizer, hh_data_dir):
    tok = smollm2_tokenizer
    long = next(e for e in load_pairs("train", hh_data_dir, None, 0.1)[0] if e.prompt.count("Human:") >= 3
                and len(tok(e.prompt).input_ids) > 120)
    cut = truncate_prompt(tok, long.prompt, 64)
    assert long.prompt.endswith(cut) and cut.startswith("\n\nHuman:")
    assert len(tok(cut, add_special_tokens=False).input_ids) <= 64
    [p] = tokenize_pairs([long], tok, 64, 8)
    assert len(p.chosen_ids) <= 9 and p.chosen_ids[-1] == tok.eos_token_id
    assert long.chosen.startswith(p.chosen) and tok.decode(p.chosen_ids[:-1]) == p.chosen
