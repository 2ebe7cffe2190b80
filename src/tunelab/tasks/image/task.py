"""The ``image`` task family: image classification with a vision transformer.

Tasks:

- ``fashion-mnist`` / ``mnist``: the IDX files (``train-images-idx3-ubyte.gz`` ...) from
  ``--data-dir`` (the folder holding them, or its parent with a ``fashion-mnist/`` / ``mnist/``
  folder), else ``../shared/data/images/…``, else the hub (one error line offline). Splits: train,
  validation (carved from train: a stratified 1/12, seed 0, the same for every run: 5,000 images)
  and test (the official 10,000).
- ``image-folder``: any ``--data-dir`` in ImageFolder layout, ``DIR/<class>/*.{png,jpg,jpeg}``
  (grayscale or colour, any size); or ``DIR/train/<class>/…`` with ``DIR/val/`` (or
  ``validation/``) and optionally ``DIR/test/``. Without a validation folder a stratified
  ``--eval-fraction`` of the train images (seed 0) is held out.

Images reach the model through its own image processor (``AutoImageProcessor``: resize, rescale,
normalise), converted to the processor's number of channels (one mean: grayscale, three: RGB).
Batches carry ``pixel_values``. The head is ``AutoModelForImageClassification`` (a new linear
classifier on the [CLS] token: ``classifier``); PEFT has no task type for image classification
(its image-classification guide uses ``task_type=None`` with ``modules_to_save=["classifier"]``),
so the head registers none, and LoRA targets the query and value projections by default (PEFT's
mapping has no ``vit`` entry; see ``VIT_LORA_TARGETS``).

Training: ``--augment`` (weak by default) augments labelled batches in tensor space
(tasks/image_augment.py). The validation split is evaluated after every epoch (early stopping, best
epoch, learning curve); the test split only once, on the final model (``test_accuracy``,
``test_macro_f1``; the confusion matrix goes to run.json), so no choice is ever made on it.
``--labelled-per-class N`` trains on N labelled images per class; ``--semi-supervised`` adds DISTL
self-training rounds on the rest (tasks/image_selftrain.py).
"""

import copy
import os
from dataclasses import replace

import torch

from ...errors import UserError
from ...methods import get_method, methods_training
from ...metrics import Metric, register
from ...models.heads import Head, register_head
from .. import TASKS
from . import options  # noqa: F401  (declares the family's options)
from ..base import Split, sha256_file
from .data import (load_hub_images, per_class_subset, read_idx_pair, read_image_folder,
                         stratified_split)
from ..supervised import Prediction, SupervisedTask

SPLIT_SEED = 0  # validation carved from train: fixed, so every run and method sees the same split
IDX_VALIDATION_FRACTION = 1 / 12  # 5,000 of MNIST's / Fashion-MNIST's 60,000 (the classic 55k / 5k)
SEMI_OPTIONS = ("self_train_rounds", "self_train_epochs", "unlabelled_per_round", "self_train_lr", "pseudo_threshold",
                "ema_momentum", "distill_weight", "ssl_weight")
# LoRA on the attention's query and value projections (PEFT's ViT guide), named ``query`` / ``value``
# in transformers 4 and ``q_proj`` / ``v_proj`` in transformers 5: PEFT adapts whichever exist.
VIT_LORA_TARGETS = "query,value,q_proj,v_proj"


# ------------------------------------------------------------------ head and metrics

def load_image_processor(source: str):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise UserError(f"--model {source}: no image processor config (preprocessor_config.json): "
                        f"{str(e).splitlines()[0]}") from e


register_head(Head("image-classification", "AutoModelForImageClassification", None,
                   lambda n: {"num_labels": n, "ignore_mismatched_sizes": True},
                   load_processor=load_image_processor,
                   description="image classification (ViT...): a new linear classifier on the [CLS] token"))




def image_mode(processor) -> str:
    """PIL mode the processor expects: "L" when it normalises one channel, else "RGB"."""
    mean = getattr(processor, "image_mean", None)
    return "L" if isinstance(mean, (list, tuple)) and len(mean) == 1 else "RGB"


def processor_size(processor) -> int:
    """The square input size the processor produces (``size`` height / shortest_edge / crop)."""
    for attr in ("crop_size", "size"):
        s = getattr(processor, attr, None)
        if isinstance(s, int):
            return s
        for k in ("height", "shortest_edge"):  # a dict or transformers' SizeDict
            v = s.get(k) if isinstance(s, dict) else getattr(s, k, None)
            if v:
                return int(v)
    raise UserError(f"{type(processor).__name__}: cannot tell the image size it produces (no size / crop_size)")


class PixelCollator:
    """rows ({"example", "labels"}) -> {"pixel_values", "labels"}: decode, convert, process."""

    def __init__(self, processor):
        self.processor = processor
        self.mode = image_mode(processor)

    def __call__(self, rows):
        images = [r["example"].pil(self.mode) for r in rows]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.tensor([r["labels"] for r in rows])}


def confusion(predictions, references, classes) -> dict:
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(references, predictions, labels=list(range(len(classes))))
    return {"labels": list(classes), "rows": "true class", "columns": "predicted class", "matrix": m.tolist()}


# ------------------------------------------------------------------ the family

class ImageTask(SupervisedTask):
    data_parallel = True  # train batches sharded per global batch, evaluation sharded and gathered (self-training too)
    family = "image"
    shared_options = ("eval_fraction",)  # common options it reads
    head = "image-classification"
    metric_names = ("accuracy", "macro_f1")
    eval_splits = ("validation", "test")
    defaults = {"batch_size": 64, "eval_batch_size": 256, "epochs": 10}
    classes: tuple = ()

    def __init__(self):
        self.cfg = None
        self._splits = None  # {"train": Split, "validation": Split, "test": Split} once read
        self.unlabelled = []  # semi-supervised: the train images not in the labelled subset

    # ---------------------------------------------------------------- options
    def option_defaults(self, method) -> dict:
        out = dict(self.defaults)
        if "lora_targets" in method.options():  # PEFT's LoRA mapping has no ViT entry
            out["lora_targets"] = VIT_LORA_TARGETS
        if "eval_fraction" not in out:
            out["eval_fraction"] = IDX_VALIDATION_FRACTION
        return out

    def configure(self, cfg) -> "ImageTask":
        t = copy.copy(self)
        t.cfg, t._splits, t.unlabelled = cfg, None, []
        return t

    def validate(self, cfg) -> None:
        if get_method(cfg.method).trains == "virtual_tokens":  # need a token-embedding model
            raise UserError(f"--method {cfg.method}: virtual tokens need a token-embedding model; task {self.name} "
                            f"feeds pixels to a ViT (use {methods_training('weights', 'adapters')})")
        if cfg.group_by_length:
            raise UserError(f"--group-by-length: images have no length (task {self.name}); drop the option")
        if cfg.labelled_per_class and cfg.max_train_samples:
            raise UserError("--max-train-samples and --labelled-per-class both choose the training images; give one")
        if cfg.semi_supervised and cfg.save_every:
            raise UserError("--save-every: the self-training rounds of --semi-supervised are not checkpointed; drop one")
        if cfg.semi_supervised and not cfg.labelled_per_class:
            raise UserError("--semi-supervised needs --labelled-per-class N (the rest of train is the unlabelled pool)")
        if not cfg.semi_supervised:
            from ...config import FIELDS

            # a compare hands its cells every resolved option: a value at its default says nothing
            given = [k for k in SEMI_OPTIONS if cfg.sources.get(k) == "given" and getattr(cfg, k) != FIELDS[k].default]
            if given:
                raise UserError(f"--{given[0].replace('_', '-')} applies only with --semi-supervised")

    # ---------------------------------------------------------------- data
    def read_splits(self, data_dir) -> dict:
        """{"train", "validation"[, "test"]} -> (examples, files, info); sets ``self.classes``."""
        raise NotImplementedError

    def load(self, split: str, data_dir) -> Split:
        if self._splits is None:
            self._splits = {}
            for name, (examples, files, info) in self.read_splits(data_dir).items():
                self._splits[name] = Split(name, examples, files, info)
            self.num_labels = len(self.classes)
            self._choose_labelled()
        if split not in self._splits:
            raise UserError(f"task {self.name} has no split {split!r} in {data_dir}")
        return self._splits[split]

    def _choose_labelled(self) -> None:
        cfg = self.cfg
        n = cfg.labelled_per_class if cfg is not None else None
        if not n:
            return
        train = self._splits["train"]
        labelled, rest = per_class_subset(train.examples, n, cfg.seed, f"task {self.name}")
        train.info = {**train.info, "labelled_per_class": n, "labelled": len(labelled), "labelled_seed": cfg.seed,
                      "pool_before_labelled_subset": len(train.examples),
                      "unlabelled_pool": len(rest) if cfg.semi_supervised else 0}
        train.examples = labelled
        self.unlabelled = rest if cfg.semi_supervised else []

    def carve_validation(self, examples: list, fraction: float, where: str) -> tuple:
        train, val, record = stratified_split(examples, fraction, SPLIT_SEED, where)
        info = {"carved_from": "train", "fraction": round(fraction, 6), "seed": SPLIT_SEED, "stratified": True,
                "size": len(val), "procedure": record["procedure"]}
        return train, val, info

    # ---------------------------------------------------------------- model
    def load_model(self, name: str, allow_pickle: bool = False):
        model, processor, layout, source = super().load_model(name, allow_pickle=allow_pickle)
        if self.classes:
            model.config.id2label = {i: c for i, c in enumerate(self.classes)}
            model.config.label2id = {c: i for i, c in enumerate(self.classes)}
        return model, processor, layout, source

    # ---------------------------------------------------------------- SupervisedTask hooks
    def encode(self, examples, processor, cfg) -> list:
        return [{"example": e, "labels": e.label} for e in examples]

    def collator(self, processor):
        return PixelCollator(processor)

    def decode(self, outputs, batch) -> list:
        return outputs.logits.float().argmax(-1).cpu().tolist()

    def length(self, row):
        return None

    def augmenter(self, processor):
        from .augment import Augmenter

        return Augmenter(processor.image_mean, processor.image_std, processor_size(processor))

    def loss(self, model, batch):
        if model.training and self._augment is not None:
            batch = {**batch, "pixel_values": self._augment(batch["pixel_values"])}
        return model(**batch).loss

    _augment = None

    # ---------------------------------------------------------------- training
    def loader(self, examples: list, processor, batch_size: int, shuffle: bool = False, seed: int = 0):
        """Batches of ``pixel_values`` + ``labels`` (shuffled with a seeded generator)."""
        gen = torch.Generator().manual_seed(seed) if shuffle else None
        return torch.utils.data.DataLoader(self.encode(examples, processor, None), batch_size=batch_size,
                                           shuffle=shuffle, generator=gen, collate_fn=self.collator(processor))

    def evaluator(self, ctx, splits: list, first_index: int = 0):
        """evaluate(model) -> (metrics, {split: Prediction}) over ``splits``."""
        from ...train import distributed

        loaders = [(s, self.loader(distributed.shard(s.examples), ctx.processor, ctx.cfg.eval_batch_size))
                   for s in splits]  # data-parallel: rank r predicts images r, r+W, ...

        def evaluate(model):
            metrics, preds = {}, {}
            for i, (split, loader) in enumerate(loaders, start=first_index):
                p, r = self.predict(model, loader, ctx.device)
                p, r = distributed.gather_shards(p), distributed.gather_shards(r)  # every rank, all images, in order
                prefix = self.split_prefix(i, split)
                metrics.update({prefix + k: v for k, v in self.metrics(p, r).items()})
                preds[split.name] = Prediction(p, r, split.examples)
            return metrics, preds

        return evaluate

    def build_data(self, ctx):
        """Plain seeded batches of the (labelled) train images; every epoch evaluates the first eval
        split (validation), ``after_fit`` the rest (test) once."""
        from ...train import distributed

        cfg = ctx.cfg
        loader = self.loader(ctx.train_examples, ctx.processor, cfg.batch_size, True, cfg.seed)
        # data-parallel: every rank draws the same seeded global batches and takes its share of each
        return (distributed.shard_train_loader(loader, len(ctx.train_examples), cfg.batch_size),
                self.evaluator(ctx, ctx.eval_splits[:1]))

    def before_fit(self, ctx, evaluate):
        cfg = ctx.cfg
        aug = self.augmenter(ctx.processor)
        self._augment = None if cfg.augment == "none" else (lambda x: aug.apply(cfg.augment, x))
        self._augmenter = aug  # the self-training rounds' weak / strong / local views

    def train_model(self, ctx, train_loader, evaluate):
        if not ctx.cfg.semi_supervised:
            return super().train_model(ctx, train_loader, evaluate)
        from .selftrain import fit_self_training

        return fit_self_training(self, ctx, train_loader, evaluate, self._augmenter)

    def after_fit(self, ctx, summary, before) -> dict:
        """Evaluate the final model once on the held-out split(s) after the first (``test``); add
        their metrics, predictions and the confusion matrix of the last split."""
        final = self.evaluator(ctx, ctx.eval_splits[1:], first_index=1)
        metrics, preds = final(ctx.model)
        summary.final_metrics = {**summary.final_metrics, **metrics}
        summary.final_predictions = {**summary.final_predictions, **preds}
        last = ctx.eval_splits[-1].name
        pr = summary.final_predictions[last]
        return {"confusion_matrix": {"split": last, **confusion(pr.predictions, pr.references, self.classes)},
                "test_evaluated": "once, on the final model" if len(ctx.eval_splits) > 1 else "no test split"}

    # ---------------------------------------------------------------- tunelab predict
    def restore(self, record: dict) -> None:
        classes = (record.get("confusion_matrix") or {}).get("labels") or \
            ((record.get("data_notes") or {}).get("train") or {}).get("classes")
        if classes:
            self.classes, self.num_labels = tuple(classes), len(classes)

    def label_names(self) -> list | None:
        return list(self.classes) or None

    def read_inputs(self, path, cfg) -> list:
        """Image files: one file, a folder of them, or an ImageFolder (``DIR/<class>/*``, recursively),
        in sorted path order; ``source`` is the path relative to the folder given."""
        from .data import IMAGE_EXTENSIONS, ImageExample

        if os.path.isfile(path):
            return [ImageExample(None, 0, os.path.basename(path), path=os.path.abspath(path))]
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise UserError(f"--input {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in it")
        return [ImageExample(None, 0, os.path.relpath(f, path), path=os.path.abspath(f)) for f in found]

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """label (class name), label_id and every class's probability, per image."""
        from ..base import progress_bar

        collate, names = self.collator(processor), list(self.classes)
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        for b in range(0, len(inputs), batch_size):
            chunk = inputs[b:b + batch_size]
            batch = collate([{"example": e, "labels": 0} for e in chunk])
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits.float().cpu()
            for e, p in zip(chunk, torch.softmax(logits, -1).tolist()):
                k = max(range(len(p)), key=p.__getitem__)
                yield {"source": e.source, "label": names[k], "label_id": k, "probabilities": dict(zip(names, p))}
            bar.update(len(chunk))
        bar.close()

    def write_predictions(self, path: str, predictions: dict) -> None:
        names = list(self.classes)
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tindex\tsource\tlabel\tprediction\tlabel_name\tprediction_name\n")
            for split, pr in predictions.items():
                for i, (p, r, ex) in enumerate(zip(pr.predictions, pr.references, pr.examples)):
                    f.write(f"{split}\t{i}\t{ex.source}\t{r}\t{p}\t{names[r]}\t{names[p]}\n")


# ------------------------------------------------------------------ IDX datasets (MNIST, Fashion-MNIST)

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class IdxTask(ImageTask):
    def __init__(self, name: str, folder: str, classes: tuple, hub: str, doc: str):
        super().__init__()
        self.name, self.folder, self.classes, self.hub, self.doc = name, folder, tuple(classes), hub, doc
        self.num_labels = len(classes)

    def _file(self, folder: str, stem: str) -> str | None:
        for ext in (".gz", ""):
            p = os.path.join(folder, stem + ext)
            if os.path.isfile(p):
                return p
        return None

    def find_folder(self, data_dir) -> str | None:
        """The folder holding the IDX files: ``data_dir`` or ``data_dir/<folder>``; without
        ``--data-dir``: ./<folder>, data/<folder>, ../shared/data/images/<folder>; None: the hub."""
        if data_dir:
            cands = [data_dir, os.path.join(data_dir, self.folder), os.path.join(data_dir, "images", self.folder)]
        else:
            cands = [self.folder, os.path.join("data", self.folder),
                     os.path.join("..", "shared", "data", "images", self.folder)]
        for c in cands:
            if self._file(c, IDX_FILES["train"][0]):
                return c
        if data_dir:
            raise UserError(f"--data-dir {data_dir}: no {IDX_FILES['train'][0]}(.gz) there or in {self.folder}/ "
                            f"(task {self.name})")
        return None

    def read_splits(self, data_dir) -> dict:
        folder = self.find_folder(data_dir)
        raw = {}
        for split, (img, lab) in IDX_FILES.items():
            if folder is None:
                examples, _, files = load_hub_images(self.hub, split)
            else:
                ip, lp = self._file(folder, img), self._file(folder, lab)
                missing = [s for s, p in ((img, ip), (lab, lp)) if p is None]
                if missing:
                    raise UserError(f"{folder}: missing {missing[0]}(.gz) ({split} split of {self.name})")
                examples = read_idx_pair(ip, lp, len(self.classes))
                files = {os.path.abspath(p): sha256_file(p) for p in (ip, lp)}
            raw[split] = (examples, files)
        frac = self.cfg.eval_fraction if self.cfg is not None else IDX_VALIDATION_FRACTION
        train, val, vinfo = self.carve_validation(raw["train"][0], frac, f"task {self.name}")
        tinfo = {"classes": list(self.classes), "validation_carved_out": len(val)}
        return {"train": (train, raw["train"][1], tinfo), "validation": (val, {}, vinfo),
                "test": (raw["test"][0], raw["test"][1], {"source": "the official test files"})}


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

TASKS.add("fashion-mnist", IdxTask("fashion-mnist", "fashion-mnist", FASHION_CLASSES, "zalando-datasets/fashion_mnist",
                                   "Fashion-MNIST: 28x28 grayscale clothing, 10 classes (IDX files)"))
TASKS.add("mnist", IdxTask("mnist", "mnist", tuple(str(i) for i in range(10)), "ylecun/mnist",
                           "MNIST: 28x28 grayscale digits (IDX files)"))


# ------------------------------------------------------------------ ImageFolder

SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation", "valid", "dev"), "test": ("test",)}


class ImageFolderTask(ImageTask):
    name = "image-folder"
    eval_splits = ("validation",)

    def configure(self, cfg) -> "ImageFolderTask":
        t = super().configure(cfg)
        if cfg.data_dir and os.path.isdir(os.path.join(cfg.data_dir, "test")) and \
                os.path.isdir(os.path.join(cfg.data_dir, "train")):
            t.eval_splits = ("validation", "test")
        return t

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if not cfg.data_dir:
            raise UserError("--task image-folder needs --data-dir (DIR/<class>/*.png|jpg|jpeg, or DIR/train/<class>/...)")

    @staticmethod
    def _sub(data_dir: str, split: str) -> str | None:
        for name in SPLIT_FOLDERS[split]:
            p = os.path.join(data_dir, name)
            if os.path.isdir(p):
                return p
        return None

    def read_splits(self, data_dir) -> dict:
        train_dir = self._sub(data_dir, "train")
        out = {}
        if train_dir is None:  # one ImageFolder: hold out a stratified share
            examples, classes, info = read_image_folder(data_dir)
            self.classes = tuple(classes)
            train, val, vinfo = self.carve_validation(examples, self.cfg.eval_fraction, data_dir)
            out["train"] = (train, {os.path.abspath(data_dir): info["sha256"]}, {**info, "validation_carved_out": len(val)})
            out["validation"] = (val, {}, vinfo)
        else:
            train, classes, info = read_image_folder(train_dir)
            self.classes = tuple(classes)
            val_dir = self._sub(data_dir, "validation")
            if val_dir is None:
                train, val, vinfo = self.carve_validation(train, self.cfg.eval_fraction, train_dir)
                info = {**info, "validation_carved_out": len(val)}
            else:
                val, _, vinfo = read_image_folder(val_dir, classes)
            out["train"] = (train, {os.path.abspath(train_dir): info["sha256"]}, info)
            out["validation"] = (val, {os.path.abspath(val_dir): vinfo["sha256"]} if val_dir else {}, vinfo)
            test_dir = self._sub(data_dir, "test")
            if test_dir is not None:
                test, _, tinfo = read_image_folder(test_dir, classes)
                out["test"] = (test, {os.path.abspath(test_dir): tinfo["sha256"]}, tinfo)
        return out


TASKS.add("image-folder", ImageFolderTask())
