"""One layer budget for every layer-selecting method: ``--layer-budget SHARE``.

SHARE is the share of the backbone's non-head parameters (embeddings + all layers + any other
non-head tensor such as a final norm; with ALF's ``--adapter lora``: all LoRA parameters) that
trains, **time-averaged over the optimizer steps**. It is the denominator of ``methods/dynamic.py``;
every layer-selecting method records what it achieved in run.json ``params.trainable_fraction_mean``
(and the budget it was given in ``params.layer_budget``), and the report puts that share next to
the metric and flags a row more than 2 points off the study's budget (``report/budget.py``).

What each method does with it (k = the most layers whose parameters fit in SHARE, largest first,
``dynamic.max_layers_for_budget``; on all-MiniLM-L6-v2 0.25 -> k = 3 = 23.6 %):

- ``selective``: trains the top k layers (on a model with several stacks, the top k' of each
  stack, k' the most that fit for all stacks together); static, so the share is exact at every
  step. Replaces ``--layers``; ``--train-embeddings`` is refused (the embeddings alone are 52.8 %
  of minilm).
- ``alf``: ``--alf-budget`` = SHARE (set here, at config time, so run.json's config says so);
  ALF caps every step at it. Giving both options with different values is an error.
- ``lisa``: the embeddings stay frozen (``--lisa-freeze-embeddings`` is set) and every draw takes
  gamma = k layers, so every step trains exactly k layers.
- ``badam``: blocks of k consecutive layers (0..k-1, k..2k-1, ...); when k does not divide the
  number of layers the last block is moved down to end at the top layer (it overlaps the block
  below), so every block has k layers and every step trains k layers.
- ``autofreeze``: capped at every step: it starts with the embeddings and the bottom layers frozen
  and the top k trainable, then freezes front to back by its own rule and never unfreezes. Its
  time-average is therefore at most SHARE (equal until its first own freeze); when its freezing
  takes it more than 2 points below, the report flags the row: the method chose to train less.

With a budget, ``--lisa-layers``, ``--badam-block-layers`` must stay at their defaults and
``--layers`` must not be given: the budget decides them. Each method does its part in its own
``apply_layer_budget(cfg)`` (``Method`` hook, called from ``resolve.build_config``).
"""

from ..config import declare, methods_with, opt
from ..errors import UserError
from .dynamic import max_layers_for_budget



@declare("layer budget", reads=methods_with("selects_layers"),
         title="layer-selecting methods (trait selects_layers)")
class LayerBudgetOptions:
    layer_budget: float = opt(None, "share of the backbone's non-head params (embeddings + layers) trainable, "
                                    "time-averaged, for every layer-selecting method (selective top layers, alf "
                                    "budget, lisa layers with frozen embeddings, autofreeze cap, badam block size; "
                                    "methods/budget.py)", above=0, max=1)


def resolve_layer_budget(cfg) -> None:
    """Called by ``resolve.build_config`` when ``--layer-budget`` is set: the method maps it onto its
    own options and refuses options that would contradict it (``Method.apply_layer_budget``)."""
    from . import get_method

    get_method(cfg.method).apply_layer_budget(cfg)


def refuse_changed(cfg, option: str, why: str) -> None:
    """A UserError when ``option`` is not at its field default while ``--layer-budget`` decides it."""
    from ..config import FIELDS, flag

    v = getattr(cfg, option)
    if v != FIELDS[option].default:
        shown = flag(option) if isinstance(v, bool) else f"{flag(option)} {v}"
        raise UserError(f"{shown} and --layer-budget {cfg.layer_budget}: give one ({why})")


def layers_in_budget(method, budget: float) -> int:
    """k for a dynamic method after ``DynamicLayerMethod.prepare`` (UserError when not one layer fits)."""
    k = max_layers_for_budget(budget, method.layer_numel, method.denominator)
    if k < 1:
        share = min(method.layer_numel) / method.denominator
        raise UserError(f"--layer-budget {budget}: smaller than one layer ({share:.1%} of "
                        f"{method.describe()['budget_denominator']}); use at least {share:.3f}")
    return k


def top_layers_in_budget(layout, layer_sizes: dict, denominator: int, budget: float) -> list:
    """Global indices of the top k' layers of every stack, k' the most for which all of them
    together fit in ``budget`` x ``denominator`` (selective FT)."""
    best = []
    for k in range(1, min(s.num_layers for s in layout.stacks) + 1):
        chosen = [s.offset + i for s in layout.stacks for i in range(s.num_layers - k, s.num_layers)]
        if sum(layer_sizes[i] for i in chosen) > budget * denominator + 1e-9:
            break
        best = chosen
    if not best:
        share = min(layer_sizes.values()) * len(layout.stacks) / denominator
        raise UserError(f"--layer-budget {budget}: smaller than one layer per stack ({share:.1%} of the "
                        f"backbone's non-head parameters); use at least {share:.3f}")
    return sorted(best)


def blocks_of(num_layers: int, k: int) -> list:
    """BAdam's blocks under a budget: k consecutive layers each, the last moved down to end at the
    top layer when k does not divide ``num_layers`` (6 layers, k = 4: [0-3], [2-5])."""
    starts = []
    for s in range(0, num_layers, k):
        s = min(s, num_layers - k)
        if s not in starts:
            starts.append(s)
    return [list(range(s, s + k)) for s in starts]
