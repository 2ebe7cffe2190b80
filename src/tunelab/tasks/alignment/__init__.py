"""Alignment: objectives on causal LMs (sft, reward, dpo, coh, rlhf, grpo, kto, orpo, simpo): tokenising and truncating
pairs (data), completion-only collators and Chain-of-Hindsight (collate), log-likelihood / reward /
generation scoring (scoring), the held-out evaluation (evaluate), the frozen win-rate judge
(judge), the Trainer <-> tunelab Method bridge (bridge), one training function per objective
(objectives) and the orchestration a task's ``fit`` calls (fit).

The tasks are in ``task`` (sft, sft-alpaca, reward, dpo, coh, rlhf), their data readers in
``preference`` (hh-rlhf pairs) and ``instruction`` (Alpaca), the offline model in ``smollm2``."""

from . import report, smollm2, task  # noqa: F401,E402  (registers the tasks, metrics, report section, smollm2 alias)
