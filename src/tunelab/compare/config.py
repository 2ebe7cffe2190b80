"""CompareConfig: a study grid (tasks x methods x models x seeds) from a YAML file or a shipped preset,
plus ``key=value`` overrides; every error names the file and line.

YAML shape (see ``presets/quick.yaml``)::

    name: my-study
    tasks: [sst2, mrpc, {cola: {epochs: 3}}]      # a name, or {name: {run options for this task}}
    # a user task: {name: LABEL, task: TASK, data options...}; relative file paths resolve against this file
    #   - {name: trec, task: text-classification, train_file: trec/train.csv, validation_file: trec/test.csv}
    models: [minilm]
    seeds: [0, 1]
    methods:
      - full                                      # label = method name
      - selective: {layers: "top:25%"}            # {label: {options}}; method = label ...
      - lora-r4: {method: lora, lora_r: 4}        # ... unless the options name the method
      - {label: lora-r16, method: lora, lora_r: 16}
    epochs: 2                                     # any other key: a `tunelab run` option shared by all cells
    max_train_samples: 500

``search: auto`` (or ``search: {lr: [1e-4, 3e-4, 1e-3], lora_r: [4, 16]}``, at study level or in a
method entry) tunes each method on each task first, on a selection split carved from the training
data (``search_fraction``, default 0.1), then runs the chosen point with every seed (compare/search.py).

``extends: quick`` (a preset name, or a YAML path relative to this file) starts from that study:
every key given here replaces the base's key of the same name (``seeds: [0, 1, 2]`` replaces the
seed list, ``epochs: 3`` that one shared option); ``name`` is never inherited.

Precedence inside one cell (low -> high): shared options, the task's, the model's, the method's,
then the command line's ``key=value`` overrides.
"""

import difflib
import os
from dataclasses import dataclass, field
from importlib import resources

import yaml

from .. import tasks  # noqa: F401  (registers the loader of every declared option: FIELDS is complete)
from ..config import FIELDS, _coerce, _key, check_option
from ..errors import UserError
from ..textio import read_text

GRID_KEYS = ("tasks", "methods", "models", "seeds")
META_KEYS = ("name", "description")
EXTENDS = "extends"
SEARCH_KEYS = ("search", "search_fraction", "search_metric")  # tuning before the grid (compare/search.py)
EXEC_KEYS = ("jobs",)  # how the grid runs, not what it computes (not in any run's config hash)
PER_CELL = {"task": "tasks", "method": "methods", "model": "models", "seed": "seeds"}
MANAGED = ("output_dir", "overwrite")  # compare decides where each run goes
# options naming a data file or folder: relative ones resolve against the study file's folder (--dataset only
# when that path exists: else it stays a hub id)
PATH_OPTIONS = ("train_file", "validation_file", "test_file")


@dataclass
class Entry:
    """One task, model or method of the grid. For methods ``label`` may differ from ``name``."""

    label: str
    name: str
    options: dict = field(default_factory=dict)
    where: str = ""
    search: object = None  # methods: None = the study's search; "off"; "auto"; {option: [values] | "auto"}


@dataclass
class CompareConfig:
    source: str  # YAML path or "preset:NAME"
    name: str
    description: str = ""
    tasks: list = field(default_factory=list)
    methods: list = field(default_factory=list)
    models: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    shared: dict = field(default_factory=dict)  # run options for every cell
    overrides: dict = field(default_factory=dict)  # command-line run options (win over everything)
    jobs: int = 1  # runs at a time (each its own process); set threads so jobs x threads <= cores
    search: object = None  # None / "off": no tuning; "auto"; {option: [values] | "auto"} (compare/search.py)
    search_fraction: float = 0.1  # share of the train split held out to choose on
    search_metric: str = ""  # the metric the search chooses on (a key of run.json's metrics); "": each task's main
    text: str = ""  # the YAML as read

    def as_dict(self) -> dict:
        ent = lambda es: [{"label": e.label, "name": e.name, "options": e.options} for e in es]  # noqa: E731
        return {"source": self.source, "name": self.name, "description": self.description,
                "tasks": ent(self.tasks), "methods": ent(self.methods), "models": ent(self.models),
                "seeds": self.seeds, "shared": self.shared, "overrides": self.overrides, "jobs": self.jobs,
                **({"search": self.search, "search_fraction": self.search_fraction,
                    **({"search_metric": self.search_metric} if self.search_metric else {}),
                    "method_search": {e.label: e.search for e in self.methods if e.search is not None}}
                   if self.search not in (None, "off") or any(e.search not in (None, "off") for e in self.methods)
                   else {})}


def preset_names() -> list:
    files = resources.files("tunelab.compare").joinpath("presets").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        from ..registry import unknown_name_message

        raise UserError("--preset: " + unknown_name_message("preset", name, preset_names()))
    return resources.files("tunelab.compare").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")


def load_compare_config(path: str | None = None, preset: str | None = None, overrides=()) -> CompareConfig:
    """Read a YAML file or a preset, apply ``key=value`` overrides, check every name and option."""
    if (path is None) == (preset is None):
        raise UserError("compare: give either CONFIG.yaml or --preset NAME (tunelab compare --help)")
    if preset is not None:
        text, source, where = preset_text(preset), f"preset:{preset}", f"preset {preset}"
    else:
        text = read_text(path, what="compare config")
        source = where = path
    cc = parse_compare_yaml(text, where)
    cc.source = source
    if not cc.name:
        cc.name = preset or os.path.splitext(os.path.basename(path))[0]
    apply_overrides(cc, overrides)
    check_names(cc)
    return cc


# ---------------------------------------------------------------- YAML with line numbers

def _line(where: str, node) -> str:
    return f"{where}:{node.start_mark.line + 1}"


def _py(node):
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _base_study(node, where: str, chain: tuple) -> CompareConfig:
    """The study named by ``extends:`` (a preset name or a path relative to ``where``'s folder)."""
    ref, at = _py(node), _line(where, node)
    if not isinstance(ref, str) or not ref.strip():
        raise UserError(f"{at}: extends: expects a preset name or a YAML path")
    if ref in preset_names():
        text, base_where = preset_text(ref), f"preset {ref}"
    else:
        base_where = ref if os.path.isabs(ref) or where.startswith("preset ") else \
            os.path.join(os.path.dirname(where), ref)
        if not os.path.isfile(base_where):
            raise UserError(f"{at}: extends: {ref}: neither a preset ({', '.join(preset_names())}) nor a file")
        text = read_text(base_where, what="compare config")
    if base_where in chain:
        raise UserError(f"{at}: extends: {ref}: a cycle ({' -> '.join((*chain, base_where))})")
    return parse_compare_yaml(text, base_where, (*chain, where))


def parse_compare_yaml(text: str, where: str, _chain: tuple = ()) -> CompareConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{where}{line}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if root is None:
        raise UserError(f"{where}:1: empty compare config (needs tasks:, methods:)")
    if not isinstance(root, yaml.MappingNode):
        raise UserError(f"{_line(where, root)}: expected a mapping (tasks:, methods:, models:, seeds:, run options)")
    cc = CompareConfig(source=where, name="", text=text)
    base = next((v for k, v in root.value if _key(str(k.value)) == EXTENDS), None)
    if base is not None:
        b = _base_study(base, where, _chain)
        cc.description, cc.tasks, cc.methods, cc.models = b.description, b.tasks, b.methods, b.models
        cc.seeds, cc.shared, cc.jobs = b.seeds, dict(b.shared), b.jobs
        cc.search, cc.search_fraction, cc.search_metric = b.search, b.search_fraction, b.search_metric
        cc.text = text + f"\n# ---- extends: {_py(base)} ----\n" + "".join(f"# {x}\n" for x in b.text.splitlines())
    seen = set()
    for knode, vnode in root.value:
        key = _key(str(knode.value))
        at = _line(where, knode)
        if key == EXTENDS:
            continue
        if key in seen:
            raise UserError(f"{at}: '{knode.value}' given twice")
        seen.add(key)
        if key in GRID_KEYS:
            setattr(cc, key, _parse_grid_key(key, vnode, where))
        elif key in META_KEYS:
            setattr(cc, key, "" if _py(vnode) is None else str(_py(vnode)))
        elif key in EXEC_KEYS:
            cc.jobs = _parse_jobs(_py(vnode), at)
        elif key == "search":
            cc.search = parse_search(_py(vnode), at)
        elif key == "search_fraction":
            cc.search_fraction = _parse_fraction(_py(vnode), at)
        elif key == "search_metric":
            cc.search_metric = _parse_metric(_py(vnode), at)
        else:
            cc.shared.update(_options({knode.value: vnode}, where, {knode.value: knode}))
    for key in ("tasks", "methods"):
        if not getattr(cc, key):
            raise UserError(f"{where}:1: '{key}:' is required (a list)")
    cc.models = cc.models or [Entry("minilm", "minilm", {}, f"{where}:1")]
    cc.seeds = cc.seeds or [0]
    return cc


def _options(items: dict, where: str, key_nodes: dict) -> dict:
    """{key: value-node} -> validated run options; key_nodes give line numbers."""
    out = {}
    for raw, vnode in items.items():
        key = _key(str(raw))
        at = _line(where, key_nodes[raw])
        if key in PER_CELL:
            raise UserError(f"{at}: '{raw}' is set per run by the grid; list it under '{PER_CELL[key]}:'")
        if key in MANAGED:
            raise UserError(f"{at}: '{raw}' is chosen by compare (runs go to OUTPUT_DIR/runs/<run-id>)")
        if key not in FIELDS:
            known = list(FIELDS) + list(GRID_KEYS) + list(META_KEYS) + list(EXEC_KEYS) + list(SEARCH_KEYS)
            raise UserError(f"{at}: unknown key '{raw}'{_did_you_mean(key, known)}")
        out[key] = _resolve_path(key, _coerce(key, _py(vnode), at), where)
    return out


def _resolve_path(key: str, value, where: str):
    """A relative data path in a study file, as seen from the study file's folder."""
    if (key not in PATH_OPTIONS + ("dataset",) or not isinstance(value, str) or os.path.isabs(value)
            or where.startswith("preset ") or not os.path.isfile(where)):
        return value
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(where)), value))
    return path if key in PATH_OPTIONS or os.path.exists(path) else value


def _parse_grid_key(key: str, node, where: str):
    if key == "seeds":
        return _parse_seeds(_py(node), _line(where, node))
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if isinstance(node, yaml.MappingNode):  # tasks: {sst2: {...}, mrpc: null}
        nodes = [yaml.MappingNode("tag:yaml.org,2002:map", [kv], start_mark=kv[0].start_mark) for kv in node.value]
    entries = [_parse_entry(key, n, where) for n in nodes]
    labels = {}
    for e in entries:
        if e.label in labels:
            raise UserError(f"{e.where}: {key[:-1]} label '{e.label}' already used at line "
                            f"{labels[e.label].split(':')[-1]}; give each entry its own label")
        labels[e.label] = e.where
    return entries


def _parse_entry(key: str, node, where: str) -> Entry:
    at = _line(where, node)
    kind = key[:-1]
    if isinstance(node, yaml.ScalarNode):
        name = _py(node)
        if name is None or isinstance(name, (dict, list)):
            raise UserError(f"{at}: empty {kind} entry")
        return Entry(str(name), str(name), {}, at)
    if not isinstance(node, yaml.MappingNode):
        raise UserError(f"{at}: a {kind} entry is a name or a mapping, not a list")
    pairs = {str(k.value): (k, v) for k, v in node.value}
    if kind == "task" and "task" in pairs and "name" in pairs and "label" not in pairs:
        pairs["label"] = pairs.pop("name")  # {name: trec, task: text-classification, ...}: the report's name
    if kind in pairs or "label" in pairs:  # flat form: {label: x, method: y, option: value ...}
        if kind not in pairs:
            raise UserError(f"{at}: entry with 'label' needs '{kind}:' too")
        name = str(_py(pairs[kind][1]))
        label = str(_py(pairs["label"][1])) if "label" in pairs else name
        rest = {k: v for k, (_, v) in pairs.items() if k not in (kind, "label")}
        search = _entry_search(kind, rest, pairs, where)
        opts = _options(rest, where, {k: kn for k, (kn, _) in pairs.items()})
        return Entry(label, name, opts, at, search)
    if len(pairs) != 1:
        raise UserError(f"{at}: a {kind} entry is 'name', '{{label: {{options}}}}' or "
                        f"'{{label: x, {kind}: y, options...}}'; found keys {sorted(pairs)}")
    (label, (knode, vnode)), = pairs.items()
    at = _line(where, knode)
    if isinstance(vnode, yaml.ScalarNode) and _py(vnode) is None:
        return Entry(label, label, {}, at)
    if not isinstance(vnode, yaml.MappingNode):
        raise UserError(f"{at}: options of {kind} '{label}' must be a mapping (option: value)")
    inner = {str(k.value): (k, v) for k, v in vnode.value}
    name = label
    if kind in inner:
        name = str(_py(inner.pop(kind)[1]))
    rest = {k: v for k, (_, v) in inner.items()}
    search = _entry_search(kind, rest, inner, where)
    opts = _options(rest, where, {k: kn for k, (kn, _) in inner.items()})
    return Entry(str(label), name, opts, at, search)


def _entry_search(kind: str, rest: dict, pairs: dict, where: str):
    """A method entry's own ``search:`` (removed from ``rest``); None when it has none."""
    if "search" not in rest:
        return None
    vnode = rest.pop("search")
    at = _line(where, pairs["search"][0])
    if kind != "method":
        raise UserError(f"{at}: 'search' belongs to the study or to a method entry, not to a {kind}")
    value = _py(vnode)
    return "off" if value is None else parse_search(value, at)


AUTO = "auto"
NOT_SEARCHED = ("task", "method", "model", "seed", "output_dir", "overwrite", "data_dir", "threads", "device",
                "save_every", "selection_split", "resume_checkpoint")


def parse_search(value, at: str):
    """``auto`` | ``off`` (also false / null) | {option: [values] or "auto" (lr only)} -> the same, checked:
    each option declared and searchable, each list non-empty with values valid for the option."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return "off"
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if not isinstance(value, dict) or not value:
        raise UserError(f"{at}: search: expected 'auto', 'off' or a mapping option: [values] "
                        f"(e.g. search: {{lr: [1.0e-4, 3.0e-4, 1.0e-3]}}), got {value!r}")
    out = {}
    for raw, vals in value.items():
        key = _key(str(raw))
        if key not in FIELDS:
            raise UserError(f"{at}: search: unknown option '{raw}'{_did_you_mean(key, FIELDS)}")
        if key in NOT_SEARCHED:
            raise UserError(f"{at}: search: '{raw}' cannot be searched (it names the run or where it runs)")
        if isinstance(vals, str) and vals.strip().lower() == AUTO:
            if key != "lr":
                raise UserError(f"{at}: search: '{raw}: auto': only lr has an automatic grid; list the values")
            out[key] = AUTO
            continue
        if not isinstance(vals, list) or not vals:
            raise UserError(f"{at}: search: '{raw}' needs a non-empty list of values, got {vals!r}")
        coerced = [check_option(key, v, f"{at}: search: {raw}") for v in vals]
        if len(set(map(repr, coerced))) != len(coerced):
            raise UserError(f"{at}: search: '{raw}' lists a value twice")
        out[key] = coerced
    return out


def _parse_metric(value, at: str) -> str:
    """A registered metric name (its direction decides the choice), or empty for each task's main metric."""
    from ..metrics import METRICS

    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value not in METRICS:
        raise UserError(f"{at}: search_metric: {value!r} is not a registered metric "
                        f"({', '.join(sorted(METRICS.names()))})")
    return value


def _parse_fraction(value, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"{at}: search_fraction: {value!r} is not a number between 0 and 1 (exclusive)")
    return float(value)


def _parse_seeds(value, at: str) -> list:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        value = [value]
    seeds = []
    for v in value:
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            s = int(v)
            if s < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise UserError(f"{at}: seeds: {v!r} is not a non-negative integer") from None
        if s in seeds:
            raise UserError(f"{at}: seeds: {s} listed twice")
        seeds.append(s)
    if not seeds:
        raise UserError(f"{at}: seeds: empty list")
    return seeds


def _parse_jobs(value, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{at}: jobs: {value!r} is not a positive integer")
    return value


# ---------------------------------------------------------------- overrides and name checks

def apply_overrides(cc: CompareConfig, items) -> None:
    """``tasks=sst2,mrpc`` / ``methods=full,lora`` select (keeping the config's per-entry options),
    ``seeds=0,1,2`` replaces, any run option (``epochs=1``) wins over every level of the config."""
    for item in items:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value")
        raw, value = item.split("=", 1)
        key = _key(raw.strip())
        where = f"override {item}"
        if key == "seeds":
            cc.seeds = _parse_seeds(yaml.safe_load(value) if value.strip() else None, where)
        elif key in ("tasks", "methods", "models"):
            names = value
            parsed = yaml.safe_load(value) if value.strip() else None
            if isinstance(parsed, list):
                names = ",".join(str(x) for x in parsed)
            wanted = [n.strip() for n in str(names).split(",") if n.strip()]
            if not wanted:
                raise UserError(f"{where}: empty list")
            known = {e.label: e for e in getattr(cc, key)}
            setattr(cc, key, [known.get(n) or Entry(n, n, {}, where) for n in wanted])
        elif key in META_KEYS:
            setattr(cc, key, value)
        elif key in EXEC_KEYS:
            cc.jobs = _parse_jobs(yaml.safe_load(value) if value.strip() else None, where)
        elif key == "search":
            try:
                parsed = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError:
                raise UserError(f"{where}: search: not valid YAML (search=auto, search=off or "
                                f"search='{{lr: [1e-4, 3e-4]}}')") from None
            cc.search = parse_search(parsed, where)
            if cc.search == "off":  # the command line switches every method's search off
                for e in cc.methods:
                    e.search = None
        elif key == "search_metric":
            cc.search_metric = _parse_metric(value.strip(), where)
        elif key == "search_fraction":
            try:
                cc.search_fraction = _parse_fraction(yaml.safe_load(value), where)
            except yaml.YAMLError:
                raise UserError(f"{where}: search_fraction: not a number") from None
        elif key in PER_CELL:
            raise UserError(f"{where}: '{raw}' is set per run; use {PER_CELL[key]}=...")
        elif key in MANAGED:
            raise UserError(f"{where}: '{raw}' is chosen by compare (use --output-dir for the study folder)")
        elif key in FIELDS:
            cc.overrides[key] = _coerce(key, yaml.safe_load(value) if value.strip() else None, where)
        else:
            known = list(FIELDS) + list(GRID_KEYS) + list(META_KEYS) + list(EXEC_KEYS) + list(SEARCH_KEYS)
            raise UserError(f"{where}: unknown key '{raw}'{_did_you_mean(key, known)}")


def check_names(cc: CompareConfig) -> None:
    """Every task, method and model must exist (errors name the config line)."""
    from ..methods import get_method
    from ..models import resolve_model
    from ..tasks import get_task

    for entries, getter in ((cc.tasks, get_task), (cc.methods, get_method), (cc.models, resolve_model)):
        for e in entries:
            try:
                getter(e.name)
            except UserError as err:
                raise UserError(f"{e.where}: {err}") from None
