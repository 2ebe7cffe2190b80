"""TRL's dataset formats, for the alignment tasks reading the user's own data (``--train-file`` ...,
``--dataset``; the reading itself is tasks/datafiles.py, the glue userdata.py).

Preference data (``dpo``, ``reward``, ``coh``, ``rlhf``; ``sft`` trains on the chosen response):

- explicit prompt: ``prompt``, ``chosen``, ``rejected``, as strings or as message lists
  ``[{"role": ..., "content": ...}, ...]`` (the prompt's messages; the responses' messages);
- implicit prompt: ``chosen`` and ``rejected`` only, sharing a prefix. Strings as hh-rlhf: the prompt
  is the shared prefix up to its last ``"\\n\\nAssistant:"`` (preference.split_dialogues, so an hh-rlhf
  file gives exactly the pairs of the hh-rlhf folder reader); strings without that marker and message
  lists: TRL's ``extract_prompt`` (the shared prefix, of characters or of whole messages).

Pairs whose two responses are identical carry no preference: skipped and counted (as for hh-rlhf).

SFT data (``sft``, ``sft-alpaca``): ``prompt`` + ``completion`` (strings or message lists);
``messages`` (the last assistant message is the completion, the messages before it the prompt: the
loss is on that reply only, as for every other format here); ``conversations`` (ShareGPT's
``from``/``value``, converted with TRL's ``maybe_convert_to_chatml``; ``human``/``gpt`` are user/assistant); ``text`` (no prompt: the loss
is on every token); Alpaca's ``instruction`` / ``input`` / ``output``; or any preference format.

Message lists become text once the model's tokenizer is known (``render_examples``, called by the
task's ``fit``): with the model's chat template when it has one (``tokenizer.chat_template``, through
TRL's ``apply_chat_template``: the prompt ends with the generation prompt, the responses are what the
template adds after it), else in hh-rlhf's Human/Assistant form (``"\\n\\nHuman: ...\\n\\nAssistant:"``
+ ``" reply"``). run.json ``alignment.data_format`` says which. A response's trailing end-of-turn
token, when it is the tokenizer's EOS, is dropped from the text because every response is encoded
followed by EOS (data.py), so it is not there twice.
"""

from ...errors import UserError
from .instruction import alpaca_prompt
from .preference import ASSISTANT, PairExample, split_dialogues

PREFERENCE_FORMATS = ("explicit prompt (prompt, chosen, rejected)", "implicit prompt (chosen, rejected)")
SFT_FORMATS = ("prompt, completion", "messages", "conversations", "text", "instruction, output (Alpaca)")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}  # ShareGPT's 'from' names -> chat roles
ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}  # Human/Assistant rendering


def detect(columns, kind: str, source: str, task: str) -> str:
    """The format of a table with ``columns`` for ``kind`` 'preference' or 'sft' -> one of
    'explicit', 'implicit', 'prompt-completion', 'messages', 'conversations', 'text', 'alpaca'."""
    cols = set(columns)
    if {"chosen", "rejected"} <= cols:
        return "explicit" if "prompt" in cols else "implicit"
    if kind == "preference":
        if cols & {"chosen", "rejected"}:
            missing = "rejected" if "chosen" in cols else "chosen"
            raise UserError(f"{source}: preference data without a '{missing}' column (task {task} needs 'chosen' and "
                            f"'rejected'); columns: {', '.join(columns)}")
        sft_like = [f for f in ("completion", "messages", "text", "output") if f in cols]
        hint = f" ({sft_like[0]!r} is SFT data: --task sft reads it)" if sft_like else ""
        raise UserError(f"{source}: unknown preference data format{hint}; columns: {', '.join(columns)}; task {task} "
                        f"reads {' or '.join(PREFERENCE_FORMATS)}, strings or message lists")
    if {"prompt", "completion"} <= cols:
        return "prompt-completion"
    for name in ("messages", "conversations", "text"):
        if name in cols:
            return name
    if {"instruction", "output"} <= cols:
        return "alpaca"
    raise UserError(f"{source}: unknown SFT data format; columns: {', '.join(columns)}; task {task} reads "
                    f"{'; '.join(SFT_FORMATS)}, or preference pairs (chosen, rejected)")


# ----------------------------------------------------------------------------- one row

def _messages(value, key: str, where: str) -> list:
    """A message list, checked; {role, content} plus any other key the row sets (pyarrow fills the
    keys other rows have with None: dropped)."""
    if not value:
        raise UserError(f"{where}: empty '{key}' (an empty message list)")
    out = []
    for k, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise UserError(f"{where}: '{key}' message {k} is not an object with 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise UserError(f"{where}: '{key}' message {k}: content must be text, found {type(m['content']).__name__}")
        if not m["content"].strip():
            raise UserError(f"{where}: '{key}' message {k} ({m['role']}) has empty content")
        out.append({k2: v for k2, v in m.items() if v is not None})
    return out


def _text(value, key: str, where: str) -> str:
    if not value.strip():
        raise UserError(f"{where}: empty '{key}'")
    return value


def _field(row: dict, key: str, where: str):
    """'str' or 'messages' and the checked value of ``row[key]``."""
    value = row.get(key)
    if value is None:
        raise UserError(f"{where}: the row has no '{key}' (a preference row needs 'chosen' and 'rejected')"
                        if key in ("chosen", "rejected") else f"{where}: the row has no '{key}'")
    if isinstance(value, str):
        return "str", _text(value, key, where)
    if isinstance(value, list):
        return "messages", _messages(value, key, where)
    raise UserError(f"{where}: '{key}' must be text or a list of messages, found {type(value).__name__}")


def _same_form(forms: dict, where: str) -> str:
    kinds = set(forms.values())
    if len(kinds) > 1:
        desc = ", ".join(f"{k} is {'a message list' if v == 'messages' else 'text'}" for k, v in forms.items())
        raise UserError(f"{where}: mixed forms ({desc}); give every field as text or every field as messages")
    return kinds.pop()


def _extract_prompt(chosen, rejected):
    from trl.data_utils import extract_prompt

    out = extract_prompt({"chosen": chosen, "rejected": rejected})
    return out["prompt"], out["chosen"], out["rejected"]


def preference_row(row: dict, fmt: str, where: str, line: int):
    """-> (PairExample, None) or (None, skip reason). Message lists are kept in ``messages`` until rendered."""
    keys = ("prompt", "chosen", "rejected") if fmt == "explicit" else ("chosen", "rejected")
    forms, values = {}, {}
    for k in keys:
        forms[k], values[k] = _field(row, k, where)
    form = _same_form(forms, where)
    if fmt == "implicit":
        if form == "str" and ASSISTANT in values["chosen"]:
            parts = split_dialogues(values["chosen"], values["rejected"])  # hh-rlhf's rule, exactly
            if parts is None:
                return None, "no_shared_assistant_turn"
        else:
            parts = _extract_prompt(values["chosen"], values["rejected"])
            if not parts[0]:
                return None, "no_shared_prompt"
            if not parts[1] or not parts[2]:
                return None, "no_response_after_shared_prompt"
        values = dict(zip(("prompt", "chosen", "rejected"), parts))
    if values["chosen"] == values["rejected"]:
        return None, "identical_responses"
    if form == "str":
        return PairExample(values["prompt"], values["chosen"], values["rejected"], line=line), None
    return PairExample("", "", "", line=line, messages=values), None


def sft_row(row: dict, fmt: str, where: str, line: int):
    """-> (PairExample with rejected None, None) or (None, skip reason)."""
    if fmt in ("explicit", "implicit"):
        ex, skip = preference_row(row, fmt, where, line)
        return ex, skip  # rejected kept: pref_accuracy on held-out pairs, as sft on hh-rlhf
    if fmt == "text":
        _, text = _field(row, "text", where)
        if not isinstance(text, str):
            raise UserError(f"{where}: 'text' must be text (use 'messages' for a conversation)")
        return PairExample("", text, None, line=line), None
    if fmt == "alpaca":
        inst, out = row.get("instruction"), row.get("output")
        if not isinstance(inst, str) or not isinstance(out, str):
            raise UserError(f"{where}: expected text fields 'instruction' and 'output' (and 'input')")
        return PairExample(alpaca_prompt(_text(inst, "instruction", where), row.get("input") or ""),
                           _text(out, "output", where), None, line=line), None
    if fmt == "prompt-completion":
        forms, values = {}, {}
        for k in ("prompt", "completion"):
            forms[k], values[k] = _field(row, k, where)
        if _same_form(forms, where) == "str":
            return PairExample(values["prompt"], values["completion"], None, line=line), None
        return PairExample("", "", None, line=line,
                           messages={"prompt": values["prompt"], "chosen": values["completion"], "rejected": None}), None
    # messages / conversations: the last assistant message is the completion
    value = row.get(fmt)
    if fmt == "conversations" and isinstance(value, list):
        from trl.data_utils import maybe_convert_to_chatml

        try:
            value = maybe_convert_to_chatml({"conversations": [dict(m) for m in value]})["messages"]
            value = [{**m, "role": SHAREGPT_ROLES.get(m.get("role"), m.get("role"))} for m in value]
        except (KeyError, TypeError, AttributeError):
            raise UserError(f"{where}: 'conversations' must be a list of {{from, value}} messages") from None
    kind, msgs = _field({fmt: value}, fmt, where)
    if kind != "messages":
        raise UserError(f"{where}: '{fmt}' must be a list of messages, found text (use 'text' for plain text)")
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        raise UserError(f"{where}: '{fmt}' has no assistant message (the reply trained on)")
    if last == 0:
        raise UserError(f"{where}: '{fmt}' has no message before its assistant reply (a prompt is needed; "
                        "use 'text' for prompt-less data)")
    return PairExample("", "", None, line=line,
                       messages={"prompt": msgs[:last], "chosen": [msgs[last]], "rejected": None}), None


def rows_to_examples(rows, fmt: str, kind: str, where):
    """rows: iterable of (index, line, dict); ``where(index)`` names the row in errors (file:line).
    -> (examples, skipped counts)."""
    one = preference_row if kind == "preference" else sft_row
    out, skipped = [], {}
    for i, line, row in rows:
        ex, skip = one(row, fmt, where(i), line)
        if ex is None:
            skipped[skip] = skipped.get(skip, 0) + 1
        else:
            out.append(ex)
    return out, skipped


# ----------------------------------------------------------------------------- rendering

def human_assistant(messages, after_prompt: bool = False) -> str:
    """Messages in hh-rlhf's form. A prompt ends with ``"\\n\\nAssistant:"`` (unless its last message is
    the assistant's); a response right after such a prompt starts with its reply (``" text"``)."""
    out = []
    for k, m in enumerate(messages):
        if k == 0 and after_prompt and m["role"] == "assistant":
            out.append(" " + m["content"])
        else:
            out.append(f"\n\n{ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}")
    return "".join(out)


def has_chat_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def _strip_eos(text: str, tok) -> str:
    eos = tok.eos_token
    t = text.rstrip()
    return t[:-len(eos)] if eos and t.endswith(eos) else text


def _strip_bos(text: str, tok) -> str:
    from .data import special_prefix

    bos = tok.bos_token
    if bos and special_prefix(tok) and text.startswith(bos):
        return text[len(bos):]  # the tokenizer adds it (data.encode): not twice
    return text


def render(ex: PairExample, tok, use_template: bool, where: str = "") -> PairExample:
    """The example with text fields from its ``messages`` (a new object; text examples unchanged)."""
    m = ex.messages
    if m is None:
        return ex
    if use_template:
        from trl.data_utils import apply_chat_template

        paired = m["rejected"] is not None
        example = ({"prompt": m["prompt"], "chosen": m["chosen"], "rejected": m["rejected"]} if paired
                   else {"prompt": m["prompt"], "completion": m["chosen"]})
        try:
            out = apply_chat_template(example, tok)
        except Exception as e:  # noqa: BLE001  (jinja / role errors of one row)
            raise UserError(f"{where or 'data'}: line/row {ex.line}: the model's chat template fails on it "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
        prompt, chosen, rejected = out["prompt"], out["chosen" if paired else "completion"], out.get("rejected")
        prompt = _strip_bos(prompt, tok)
        chosen = _strip_eos(chosen, tok)
        rejected = None if rejected is None else _strip_eos(rejected, tok)
    else:
        prompt = human_assistant(m["prompt"])
        if m["prompt"][-1]["role"] != "assistant":
            prompt += ASSISTANT
        chosen = human_assistant(m["chosen"], after_prompt=True)
        rejected = None if m["rejected"] is None else human_assistant(m["rejected"], after_prompt=True)
    return PairExample(prompt, chosen, rejected, line=ex.line)


def render_examples(examples, tok, where: str = "") -> tuple:
    """(rendered examples, how) where how is None when no example holds messages; ``where`` names
    the data in errors."""
    if not any(getattr(e, "messages", None) for e in examples):
        return list(examples), None
    use = has_chat_template(tok)
    return [render(e, tok, use, where) for e in examples], ("chat_template" if use else "human_assistant")
