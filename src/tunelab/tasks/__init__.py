"""Tasks: data + objective + metrics, registered by name. Importing a family module registers it."""

from ..registry import Registry

TASKS = Registry("task")


def get_task(name: str):
    _load_families()
    return TASKS.get(name)


def task_names() -> list:
    _load_families()
    return TASKS.names()


def _load_families():
    from . import alignment  # noqa: F401  (sft, sft-alpaca, reward, dpo, coh, rlhf on causal LMs)
    from . import docrep  # noqa: F401  (bbc-docrep, docrep: self-supervised document vectors)
    from . import glue  # noqa: F401  (registers the 9 GLUE tasks)
    from . import asr  # noqa: F401  (speech-accents, asr: Whisper; registers cer/wer and the speech-seq2seq head)
    from . import keyphrase  # noqa: F401  (inspec, kdd, www, keyphrase: token classification)
    from . import image  # noqa: F401  (fashion-mnist, mnist, image-folder: ViT image classification)
