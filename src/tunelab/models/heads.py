"""Model heads, registered by name: which ``transformers`` auto class a task family loads, with what
arguments, which PEFT task type it is, which processor turns raw inputs into model inputs, and
whether the head's modules always train.

A task names its head (``Task.head``); a new task family with a new kind of model registers its
head here or in its own module (``register_head(Head(...))``). ``models/loading.py`` knows no head
by name.
"""

from dataclasses import dataclass, field
from typing import Callable

from ..registry import Registry


def load_tokenizer(source: str):
    """AutoTokenizer with a pad token (the EOS token when the tokenizer has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@dataclass(frozen=True)
class Head:
    name: str
    auto_class: str  # e.g. "AutoModelForSequenceClassification"
    peft_task_type: str  # PEFT TaskType: "SEQ_CLS", "CAUSAL_LM", "TOKEN_CLS", "SEQ_2_SEQ_LM", ...
    kwargs: Callable = field(default=lambda num_labels: {})  # num_labels -> from_pretrained kwargs
    trains: bool = True  # False: a pretrained head (e.g. an LM head tied to the embeddings) is not forced to train
    load_processor: Callable = load_tokenizer  # source -> tokenizer / feature extractor / processor
    description: str = ""

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_class)


HEADS = Registry("head")


def register_head(head: Head) -> Head:
    HEADS.add(head.name, head)
    return head


register_head(Head("classification", "AutoModelForSequenceClassification", "SEQ_CLS",
                   lambda n: {"num_labels": n}, description="sequence classification (a new linear classifier)"))
register_head(Head("regression", "AutoModelForSequenceClassification", "SEQ_CLS",
                   lambda n: {"num_labels": 1, "problem_type": "regression"}, description="one score, MSE loss"))
register_head(Head("reward", "AutoModelForSequenceClassification", "SEQ_CLS",
                   lambda n: {"num_labels": 1}, description="Bradley-Terry reward model: one score per sequence"))
register_head(Head("causal-lm", "AutoModelForCausalLM", "CAUSAL_LM", trains=False,
                   description="the pretrained LM head (often tied to the embeddings)"))
register_head(Head("token-classification", "AutoModelForTokenClassification", "TOKEN_CLS",
                   lambda n: {"num_labels": n},
                   description="a label per token (a new linear classifier over every token's hidden state; keyphrase BIO)"))
