"""The alignment tasks on the user's own data in TRL's formats (tasks/alignment/formats.py,
userdata.py): explicit / implicit prompt preference pairs as strings or message lists, SFT formats,
chat template vs Human/Assistant rendering, bad input, and tiny end-to-end DPO runs from files."""

import gzip
import json
import os
import re
import shutil

import pytest

from tunelab.cli import main
from tunelab.config import RunConfig
from tunelab.errors import UserError
from tunelab.tasks import get_task, load_families
from tunelab.tasks.alignment.data import tokenize_pairs
from tunelab.tasks.alignment.formats import render_examples
from tunelab.tasks.alignment.preference import ASSISTANT, load_pairs, split_dialogues

load_families()


def _hh_rows(hh_data_dir, n=40):
    with gzip.open(os.path.join(hh_data_dir, "helpful-base", "test.jsonl.gz"), "rt", encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def _messages(dialogue: str) -> list:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{user, a}, {assistant, b}] (an independent parse of hh-rlhf text)."""
    parts = re.split(r"\n\n(Human|Assistant): ?", dialogue)
    assert parts[0] == ""
    return [{"role": "user" if r == "Human" else "assistant", "content": c} for r, c in zip(parts[1::2], parts[2::2])]


def _forms(hh_data_dir, n=40):
    """hh-rlhf rows as (implicit rows, explicit-prompt strings, explicit-prompt messages), the last two
    only for rows whose turns are clean text (no surrounding whitespace), so both forms say the same."""
    rows = _hh_rows(hh_data_dir, n)
    strings, convs = [], []
    for r in rows:
        p, c, rj = split_dialogues(r["chosen"], r["rejected"])
        msgs = _messages(p[:-len(ASSISTANT)])
        if c == rj or any(m["content"] != m["content"].strip() or not m["content"] for m in msgs) \
                or c != " " + c.strip() or rj != " " + rj.strip() or not c.strip() or not rj.strip():
            continue
        strings.append({"prompt": p, "chosen": c, "rejected": rj})
        convs.append({"prompt": msgs, "chosen": [{"role": "assistant", "content": c.strip()}],
                      "rejected": [{"role": "assistant", "content": rj.strip()}]})
    return rows, strings, convs


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _user(task="dpo", **options):
    cfg = RunConfig(task=task, **options)
    return get_task(task).configure(cfg)


def test_implicit_prompt_file_gives_the_hh_rlhf_folder_pairs(tmp_path, hh_data_dir):
    rows = _hh_rows(hh_data_dir, 60)
    folder = tmp_path / "hh" / "mine"
    train, test = _write(folder / "train.jsonl", rows[:45]), _write(folder / "test.jsonl", rows[45:])
    t = _user(train_file=train, validation_file=test)
    assert t.user.format == "implicit" and t.eval_splits == ("validation",)
    for split in ("train", "validation"):
        ours = t.load(split, None)
        theirs, files, _ = load_pairs(split, str(tmp_path / "hh"), "mine", 0.1)
        key = lambda e: (e.prompt, e.chosen, e.rejected, e.line)  # noqa: E731
        assert [key(e) for e in ours.examples] == [key(e) for e in theirs] and len(theirs) > 10
        assert ours.files == files  # the same file, the same sha256
    # one file, no validation: the fixed-seed held-out split of the folder reader, pair for pair
    alone = tmp_path / "alone" / "mine"
    one = _write(alone / "train.jsonl", rows)
    t = _user(train_file=one, eval_fraction=0.2)
    for split in ("train", "validation"):
        ours = t.load(split, None)
        theirs = load_pairs(split, str(tmp_path / "alone"), "mine", 0.2)[0]
        assert [key(e) for e in ours.examples] == [key(e) for e in theirs]
    assert ours.info["held_out"]["seed"] == 1234 and len(ours.examples) >= 10


def test_explicit_strings_and_messages_without_chat_template_give_the_hh_text(tmp_path, hh_data_dir, smollm2_tokenizer):
    _, strings, convs = _forms(hh_data_dir)
    assert len(strings) >= 20
    sf, mf = _write(tmp_path / "s.jsonl", strings), _write(tmp_path / "m.jsonl", convs)
    s = _user(train_file=sf, validation_file=sf).load("train", None).examples
    m = _user(train_file=mf, validation_file=mf).load("train", None).examples
    assert [(e.prompt, e.chosen, e.rejected) for e in s] == [(r["prompt"], r["chosen"], r["rejected"]) for r in strings]
    assert all(e.messages is not None for e in m) and [e.line for e in m] == list(range(1, len(strings) + 1))
    tok = smollm2_tokenizer
    template, tok.chat_template = tok.chat_template, None
    try:
        rendered, how = render_examples(m, tok)
    finally:
        tok.chat_template = template
    assert how == "human_assistant"
    assert [(e.prompt, e.chosen, e.rejected) for e in rendered] == [(e.prompt, e.chosen, e.rejected) for e in s]


def test_messages_with_the_models_chat_template_tokenize_as_the_template(tmp_path, hh_data_dir, smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.chat_template  # SmolLM2-Instruct ships one (ChatML: <|im_start|>role ... <|im_end|>)
    _, _, convs = _forms(hh_data_dir)
    mf = _write(tmp_path / "m.jsonl", convs)
    m = _user(train_file=mf, validation_file=mf).load("train", None).examples
    rendered, how = render_examples(m[:6], tok)
    assert how == "chat_template"
    pairs = tokenize_pairs(rendered, tok, 10_000, 10_000)
    for row, p in zip(convs, pairs):
        for resp, ids in (("chosen", p.chosen_ids), ("rejected", p.rejected_ids)):
            full = tok.apply_chat_template(row["prompt"] + row[resp], tokenize=False)
            want = tok(full, add_special_tokens=False).input_ids
            # prompt + response + EOS (<|im_end|>) = the template's tokens, but its final newline
            assert p.prompt_ids + ids == want[:len(p.prompt_ids) + len(ids)] and tok.decode(want[len(p.prompt_ids) + len(ids):]) == "\n"
        turn = tok("<|im_start|>assistant\n", add_special_tokens=False).input_ids
        assert ids[-1] == tok.eos_token_id and p.prompt_ids[-len(turn):] == turn


def test_sft_formats(tmp_path, smollm2_tokenizer):
    rows = {
        "pc": [{"prompt": "Say hi.", "completion": " Hi!"}, {"prompt": "Count.", "completion": " 1 2 3"}],
        "messages": [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."},
                                   {"role": "assistant", "content": "Hi!"}]}] * 2,
        "sharegpt": [{"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}] * 2,
        "text": [{"text": "A plain document."}, {"text": "Another one."}],
        "alpaca": [{"instruction": "Say hi.", "input": "", "output": "Hi!"}] * 2,
    }
    tok = smollm2_tokenizer
    got = {}
    for name, data in rows.items():
        t = _user("sft", train_file=_write(tmp_path / f"{name}.jsonl", data), validation_file=str(tmp_path / f"{name}.jsonl"))
        assert t.metric_names == ("chosen_logppl",)  # no rejected responses: nothing to rank
        ex, how = render_examples(t.load("train", None).examples, tok)
        got[name] = (ex[0], how, t.user.format)
    assert (got["pc"][0].prompt, got["pc"][0].chosen, got["pc"][2]) == ("Say hi.", " Hi!", "prompt-completion")
    e, how, fmt = got["messages"]
    assert fmt == "messages" and how == "chat_template" and e.chosen == "Hi!" and e.rejected is None
    assert e.prompt == tok.apply_chat_template([{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Say hi."}], tokenize=False,
                                               add_generation_prompt=True)
    assert got["sharegpt"][0].chosen == "Hi!" and got["sharegpt"][2] == "conversations"
    e = got["text"][0]
    assert (e.prompt, e.chosen) == ("", "A plain document.")
    [p] = tokenize_pairs([e], tok, 8, 8)
    assert p.prompt_ids == [tok.bos_token_id]  # a prompt-less sequence starts from BOS
    assert got["alpaca"][0].prompt.endswith("### Instruction:\nSay hi.\n\n### Response:\n")
    # preference tasks do not take SFT data
    with pytest.raises(UserError, match=r"unknown preference data format \('completion' is SFT data: --task sft"):
        _user("dpo", train_file=str(tmp_path / "pc.jsonl"))


def test_implicit_prompt_messages_and_plain_strings():
    from tunelab.tasks.alignment.formats import rows_to_examples

    u = {"role": "user", "content": "What color is the sky?"}
    rows = [{"chosen": [u, {"role": "assistant", "content": "Blue."}], "rejected": [u, {"role": "assistant", "content": "Green."}]},
            {"chosen": [u, {"role": "assistant", "content": "Blue."}], "rejected": [u, {"role": "assistant", "content": "Blue."}]},
            {"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]}]
    ex, skipped = rows_to_examples(((i, i + 1, r) for i, r in enumerate(rows)), "implicit", "preference", lambda i: f"f:{i + 1}")
    assert len(ex) == 1 and ex[0].messages == {"prompt": [u], "chosen": [{"role": "assistant", "content": "Blue."}],
                                               "rejected": [{"role": "assistant", "content": "Green."}]}
    assert skipped == {"identical_responses": 1, "no_shared_prompt": 1}
    # strings without hh-rlhf's Assistant marker: TRL's extract_prompt (shared prefix, backed off to the space)
    ex, _ = rows_to_examples([(0, 1, {"chosen": "The sky is blue.", "rejected": "The sky is green."})], "implicit",
                             "preference", str)
    assert (ex[0].prompt, ex[0].chosen, ex[0].rejected) == ("The sky is", " blue.", " green.")


@pytest.mark.parametrize("rows,message", [
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}],
     r"bad\.jsonl:2: the row has no 'rejected' \(a preference row needs 'chosen' and 'rejected'\)"),
    ([{"prompt": "a", "chosen": "b"}], r"bad\.jsonl: preference data without a 'rejected' column .*columns: prompt, chosen"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": " ", "rejected": "c"}],
     r"bad\.jsonl:2: empty 'chosen'"),
    ([{"question": "a", "answer": "b"}], r"bad\.jsonl: unknown preference data format; columns: question, answer; task dpo reads"),
    ([{"prompt": [{"role": "user", "content": "a"}], "chosen": "b", "rejected": "c"}],
     r"bad\.jsonl:1: mixed forms \(prompt is a message list, chosen is text, rejected is text\)"),
    ([{"prompt": [{"role": "user", "content": ""}], "chosen": [{"role": "assistant", "content": "b"}],
       "rejected": [{"role": "assistant", "content": "c"}]}], r"bad\.jsonl:1: 'prompt' message 0 \(user\) has empty content"),
])
def test_bad_preference_rows_are_one_line_errors(tmp_path, capsys, rows, message):
    bad = _write(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out"
    code = main(["run", "--task", "dpo", "--method", "lora", "--model", "smollm2", "--train-file", bad,
                 "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()  # checked before the model or the output folder is touched


def test_dataset_that_cannot_load_offline_and_a_saved_dataset(tmp_path, capsys, hh_data_dir, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no minute of connection retries in CI
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    code = main(["run", "--task", "dpo", "--method", "lora", "--model", "smollm2", "--dataset", "someone/no-such-prefs",
                 "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot be loaded offline" in err and "local path" in err
    # a save_to_disk folder in the explicit string form reads as the same file would
    from datasets import Dataset, DatasetDict

    _, strings, _ = _forms(hh_data_dir)
    DatasetDict({"train": Dataset.from_list(strings[:12]), "test": Dataset.from_list(strings[12:20])}).save_to_disk(
        str(tmp_path / "saved"))
    t = _user(dataset=str(tmp_path / "saved"), validation_split="test")
    f = _user(train_file=_write(tmp_path / "tr.jsonl", strings[:12]), validation_file=_write(tmp_path / "te.jsonl", strings[12:20]))
    for split in ("train", "validation"):
        a, b = t.load(split, None).examples, f.load(split, None).examples
        assert [(e.prompt, e.chosen, e.rejected) for e in a] == [(e.prompt, e.chosen, e.rejected) for e in b]


def _dpo_run(tmp_path, name, model, train, validation, *extra):
    out = str(tmp_path / name)
    args = ["run", "--task", "dpo", "--method", "lora", "--model", model, "--train-file", train, "--validation-file",
            validation, "--output-dir", out, "--max-train-samples", "4", "--max-eval-samples", "4",
            "--max-prompt-length", "32", "--max-response-length", "8", "--batch-size", "2", "--grad-accum", "1",
            "--judge", "none", "--threads", "1", "--seed", "0", *extra]
    assert main(args) == 0
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        return json.load(f), out


def test_dpo_from_string_and_conversational_files(tmp_path, tiny_llama_dir, hh_data_dir, alignment_cache):
    _, strings, convs = _forms(hh_data_dir)
    sdir, cdir = tmp_path / "str", tmp_path / "conv"
    s, _ = _dpo_run(tmp_path, "s", tiny_llama_dir, _write(sdir / "train.jsonl", strings[:8]),
                    _write(sdir / "test.jsonl", strings[8:12]), "--test-file", _write(sdir / "t.jsonl", strings[12:15]))
    assert s["status"] == "completed" and 0 <= s["metrics"]["pref_accuracy"] <= 1
    assert s["alignment"]["data_format"]["format"] == "explicit" and s["alignment"]["data_format"]["messages"].startswith("none")
    assert {"test_pref_accuracy", "test_chosen_logppl"} <= set(s["metrics"]) and s["data_sizes"]["test"] == 3
    assert str(sdir / "t.jsonl") in s["data"] and s["data_notes"]["test"]["format"] == "explicit"
    with open(os.path.join(tmp_path, "s", "predictions.tsv"), encoding="utf-8") as f:
        splits = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    assert splits == ["validation"] * 4 + ["test"] * 3
    # conversational: the model's chat template, or Human/Assistant when it has none
    c, _ = _dpo_run(tmp_path, "c", tiny_llama_dir, _write(cdir / "train.jsonl", convs[:8]), _write(cdir / "test.jsonl", convs[8:12]))
    assert c["status"] == "completed" and c["alignment"]["data_format"]["messages"] == "chat_template"
    assert "<|im_start|>assistant\n" in c["samples"][0]["prompt"]
    plain = tmp_path / "no-template"
    shutil.copytree(tiny_llama_dir, plain)
    for name in ("chat_template.jinja",):
        if (plain / name).exists():
            (plain / name).unlink()
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    h, _ = _dpo_run(tmp_path, "h", str(plain), str(cdir / "train.jsonl"), str(cdir / "test.jsonl"))
    assert h["alignment"]["data_format"]["messages"] == "human_assistant"
    # Human/Assistant rendering of the messages = the string form: the same pairs, the same numbers
    s2, _ = _dpo_run(tmp_path, "s2", str(plain), str(sdir / "train.jsonl"), str(sdir / "test.jsonl"))
    assert h["metrics"] == s2["metrics"] and h["samples"] == s2["samples"]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["strings", "messages"])
def test_smollm2_dpo_lora_from_files(tmp_path, hh_data_dir, alignment_cache, form):
    """The issue's done-when: dpo + lora + smollm2 from train/test JSONL files, both forms (minutes on CPU)."""
    converted = os.path.join(alignment_cache["user_cache"], "smollm2")
    link = os.path.join(alignment_cache["dir"], "smollm2")
    if os.path.isdir(converted) and not os.path.exists(link):
        os.symlink(converted, link)
    _, strings, convs = _forms(hh_data_dir)
    rows = strings if form == "strings" else convs
    r, _ = _dpo_run(tmp_path, form, "smollm2", _write(tmp_path / "P" / "train.jsonl", rows[:8]),
                    _write(tmp_path / "P" / "test.jsonl", rows[8:16]))
    assert r["status"] == "completed" and 0 <= r["metrics"]["pref_accuracy"] <= 1
    assert r["alignment"]["data_format"]["messages"] == ("chat_template" if form == "messages" else "none (text fields)")
