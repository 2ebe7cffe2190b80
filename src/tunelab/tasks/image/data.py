"""Image data for the ``image`` task family: the IDX format (MNIST / Fashion-MNIST ``.gz`` files),
ImageFolder layouts and Hugging Face hub image datasets, all turned into ``ImageExample`` rows.

- ``read_idx(path)``: one IDX file (big-endian header: two zero bytes, a type code, the number of
  dimensions, then one 4-byte size per dimension; then the raw values) as a numpy array. Only the
  unsigned-byte type (0x08) that MNIST-style files use is accepted; a short or oversized body is an
  error naming the file.
- ``read_image_folder(folder)``: ``FOLDER/<class>/*.{png,jpg,jpeg}`` (any case), classes sorted by
  name. Every image is opened and fully decoded once here, so a corrupt file, an empty class folder
  or a one-class folder fails before any model is loaded, with one line naming it.
- ``stratified_split`` / ``per_class_subset``: the seeded, per-class splits the tasks record
  (``tasks/splits.py``).
- ``load_hub_images(repo, split)``: ``datasets.load_dataset``; offline it is one UserError line.

An ``ImageExample`` keeps either the pixels (IDX, hub: a small uint8 array) or the file path
(ImageFolder: decoded again per batch, so large folders never sit in memory as tensors).
"""

import gzip
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..splits import seeded_split, take
from ..base import sha256_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass
class ImageExample:
    image: object  # np.ndarray uint8 (H, W) or (H, W, 3), or None when ``path`` is set
    label: int
    source: str  # "file.png" or "train-images-idx3-ubyte.gz#17": where the example came from
    path: str | None = None  # image file to decode (ImageFolder)
    line: int = 0  # 1-based index in its source file (IDX) or 0; the predictions file prints it

    def pil(self, mode: str):
        """The image as a PIL image in ``mode`` ("L" grayscale or "RGB"); UserError naming the file
        if it cannot be decoded."""
        from PIL import Image

        if self.path is None:
            return Image.fromarray(self.image).convert(mode)
        try:
            with Image.open(self.path) as im:
                return im.convert(mode)
        except Exception as e:  # noqa: BLE001  (PIL raises many types for broken files)
            raise UserError(f"{self.path}: not a readable image ({_one_line(e)})") from None


# ------------------------------------------------------------------ IDX

_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip-compressed or not) as an array of its declared shape."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read IDX file ({_one_line(e)})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path}: not an IDX file (the first two bytes must be zero)")
    dtype, ndim = data[2], data[3]
    if dtype not in _IDX_TYPES:
        raise UserError(f"{path}: IDX value type 0x{dtype:02x} not supported (only unsigned bytes, 0x08)")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise UserError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = memoryview(data)[4 + 4 * ndim:]
    expected = int(np.prod(shape))
    if len(body) != expected:
        raise UserError(f"{path}: IDX body has {len(body)} bytes, its header {shape} declares {expected}")
    return np.frombuffer(body, dtype=_IDX_TYPES[dtype]).reshape(shape)


def read_idx_pair(images_path: str, labels_path: str, num_classes: int) -> list:
    """ImageExamples from an images file (N, H, W) and a labels file (N,)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise UserError(f"{images_path}: expected 3 dimensions (N, height, width), found shape {images.shape}")
    if labels.ndim != 1:
        raise UserError(f"{labels_path}: expected 1 dimension (N,), found shape {labels.shape}")
    if len(images) != len(labels):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise UserError(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} (expected 0..{num_classes - 1})")
    name = os.path.basename(images_path)
    return [ImageExample(images[i], int(labels[i]), f"{name}#{i}", line=i + 1) for i in range(len(images))]


# ------------------------------------------------------------------ ImageFolder

def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_classes(folder: str) -> list:
    """Sorted class folder names of an ImageFolder; UserError for fewer than two or an empty one."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: no such folder")
    classes = sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise UserError(f"{folder}: no class folders (ImageFolder layout: {folder}/<class>/*.png|jpg|jpeg)")
    for c in classes:
        if not any(_is_image(f) for f in os.listdir(os.path.join(folder, c))):
            raise UserError(f"{os.path.join(folder, c)}: empty class folder (no .png/.jpg/.jpeg images)")
    if len(classes) < 2:
        raise UserError(f"{folder}: only one class folder ({classes[0]}); classification needs at least two")
    return classes


def check_image(path: str) -> tuple:
    """Decode ``path`` fully (a truncated JPEG only fails here); (width, height, mode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.size[0], im.size[1], im.mode
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: not a readable image ({_one_line(e)})") from None


def read_image_folder(folder: str, classes: list | None = None) -> tuple:
    """(examples, classes, info) of ``folder/<class>/*``; ``classes`` fixes the label ids (a
    validation folder must use the train folder's classes). ``info["sha256"]`` hashes every file's
    relative path and content (what run.json records as the folder's data hash)."""
    found = list_classes(folder)
    if classes is None:
        classes = found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise UserError(f"{os.path.join(folder, extra[0])}: class not in the train folder ({', '.join(classes)})")
    examples, sizes, modes = [], set(), set()
    digest = hashlib.sha256()
    for c in found:
        cdir = os.path.join(folder, c)
        for name in sorted(f for f in os.listdir(cdir) if _is_image(f)):
            path = os.path.join(cdir, name)
            w, h, mode = check_image(path)
            digest.update(f"{c}/{name}\0".encode() + bytes.fromhex(sha256_file(path)))
            sizes.add((w, h))
            modes.add(mode)
            examples.append(ImageExample(None, classes.index(c), os.path.join(c, name), path=os.path.abspath(path)))
    info = {"folder": os.path.abspath(folder), "classes": classes, "images": len(examples),
            "sha256": digest.hexdigest(),
            "per_class": {c: sum(e.label == i for e in examples) for i, c in enumerate(classes)},
            "image_modes": sorted(modes), "sizes": {"distinct": len(sizes),
                                                   "min": list(min(sizes)), "max": list(max(sizes))}}
    return examples, classes, info


# ------------------------------------------------------------------ splits

def stratified_split(examples: list, fraction: float, seed: int, where: str) -> tuple:
    """(kept, held_out, record): ``round(fraction * n_c)`` (at least 1, at most n_c - 1) examples of
    every class c held out (tasks/splits.py, stratified by label); both keep the original order."""
    parts, record = seeded_split(examples, {"validation": float(fraction)}, seed, label=lambda e: e.label,
                                 too_small=lambda c, n: f"{where}: class {c} has {n} image(s); a validation split "
                                                        "needs at least 2 per class (or give train/ and val/ folders)")
    return take(examples, parts["train"]), take(examples, parts["validation"]), record


def per_class_subset(examples: list, n: int, seed: int, where: str) -> tuple:
    """(chosen, rest): exactly ``n`` examples of every class (seeded, tasks/splits.py), both in original order."""
    parts, _ = seeded_split(examples, {"labelled": int(n)}, seed, label=lambda e: e.label, rest="unlabelled",
                            too_small=lambda c, k: f"--labelled-per-class {n}: class {c} of {where} has only {k} "
                                                   "training images")
    return take(examples, parts["labelled"]), take(examples, parts["unlabelled"])


# ------------------------------------------------------------------ hub

def load_hub_images(repo: str, split: str, image_col: str = "image", label_col: str = "label") -> tuple:
    """(examples, class names, files) of a hub image dataset; one UserError line when unreachable."""
    try:
        import datasets
        import huggingface_hub

        datasets.logging.set_verbosity_error()
        huggingface_hub.utils.logging.set_verbosity_error()
        ds = datasets.load_dataset(repo, split=split)
    except Exception as e:  # noqa: BLE001  (network / hub errors become one line)
        raise UserError(f"cannot load {repo} ({split}) from the hub ({type(e).__name__}); pass --data-dir "
                        "with a local copy") from e
    feat = ds.features.get(label_col)
    names = list(getattr(feat, "names", None) or sorted({int(x) for x in ds[label_col]}))
    examples = [ImageExample(np.asarray(r[image_col]), int(r[label_col]), f"hub:{repo}/{split}#{i}", line=i + 1)
                for i, r in enumerate(ds)]
    return examples, names, {f"hub:{repo}/{split}": getattr(ds, "_fingerprint", "")}


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
