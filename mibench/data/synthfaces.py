"""`synthfaces`: the embedded default dataset — procedurally rendered cartoon face identities.

This module owns the whole dataset: identity attributes, the per-image nuisance model, the
vectorised renderer, the split layout, the on-disk cache and the registered kinds `synthfaces32`
and `synthfaces64` (presets of `synthfaces(split, resolution=...)`).

Identities. An identity is a fixed draw of ~30 attributes: face width/height/jaw, skin tone, hair
colour/style/volume/part, eye colour/spacing/size/height, brows, nose, mouth, lips, ears, blush,
facial hair, glasses. Categorical attributes come from small palettes and continuous ones from
shared ranges, and every image jitters them, so no single attribute names a person — identity lives
in the combination. Each image also draws strong nuisances: translation/scale/rotation, a yaw-like
shift of the inner features, expression (smile, open mouth, blinks, brow raise, gaze), lighting
direction/strength/colour, background (gradient + stripes), clothing, random occluders, blur
(edge softness), colour grading and pixel noise.

Populations (independent seed streams, hence disjoint identities): `private` (the target's
classes: splits `private-train` / `private-test`), `public` (the attacker's auxiliary data, split
`public`, labelled with the public identity index) and `shifted` (split `public-shifted`: other
identities, a shifted attribute mix and a painterly rendering style — sepia varnish, dark
backgrounds, outlines, canvas texture — standing in for FFHQ → MetFaces).

Determinism. All randomness comes from a counter-based hash (splitmix64 over numpy uint64) keyed by
(seed, population, identity, image index, attribute slot); image parameters are derived with
float64 arithmetic and the rasteriser uses only correctly rounded float32 operations (+ − × ÷ √,
min/max/abs/floor) — no transcendental functions, reductions, convolutions or fused ops — so an
image's bytes depend only on (seed, split, identity, image index), never on the batch it was
rendered in or on the thread count.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, save_file

from mibench.data.base import TensorImageDataset
from mibench.errors import DataError
from mibench.ops.cache import Artifact, ArtifactCache
from mibench.ops.fileio import atomic_path
from mibench.registry import DATASETS, suggest

SPLITS = ["private-train", "private-test", "public", "public-shifted"]
POPULATIONS = {"private": 1, "public": 2, "shifted": 3}  # population → seed stream id
SPLIT_POPULATION = {"private-train": "private", "private-test": "private", "public": "public",
                    "public-shifted": "shifted"}
# Test images of an identity use image indices TEST_OFFSET + j, so the train and test images stay
# the same when `train_per_class` / `test_per_class` change.
TEST_OFFSET = 1 << 20
CACHE_FORMAT = 1

# ------------------------------------------------------------------------------------------ palettes
# RGB in [0, 1]. Palettes are small on purpose: many identities share every entry.

SKIN = np.array([[0.98, 0.85, 0.74], [0.95, 0.78, 0.64], [0.89, 0.70, 0.56], [0.80, 0.60, 0.45],
                 [0.70, 0.50, 0.36], [0.58, 0.41, 0.29], [0.45, 0.31, 0.22], [0.34, 0.24, 0.17]])
HAIR = np.array([[0.07, 0.06, 0.06], [0.24, 0.15, 0.09], [0.44, 0.29, 0.17], [0.55, 0.21, 0.11],
                 [0.82, 0.43, 0.18], [0.70, 0.57, 0.34], [0.93, 0.83, 0.55], [0.60, 0.60, 0.61],
                 [0.92, 0.91, 0.88], [0.25, 0.35, 0.80], [0.85, 0.33, 0.60]])
HAIR_NAMES = ["black", "dark brown", "brown", "auburn", "ginger", "dark blonde", "blonde", "grey", "white",
              "dyed blue", "dyed pink"]
EYES = np.array([[0.22, 0.13, 0.07], [0.45, 0.28, 0.12], [0.55, 0.47, 0.20], [0.28, 0.55, 0.30],
                 [0.28, 0.50, 0.88], [0.56, 0.62, 0.68]])
EYE_NAMES = ["dark brown", "brown", "hazel", "green", "blue", "grey"]
LIPS = np.array([[0.80, 0.38, 0.40], [0.66, 0.27, 0.28], [0.58, 0.34, 0.30], [0.88, 0.52, 0.52]])
FRAMES = np.array([[0.05, 0.05, 0.05], [0.40, 0.24, 0.12], [0.85, 0.68, 0.25], [0.75, 0.12, 0.12],
                   [0.15, 0.25, 0.70]])
HAIR_STYLES = ["bald", "short", "fringe", "side part", "long", "afro", "mohawk", "bun"]
NOSES = ["button", "long", "wide"]
FACIAL_HAIR = ["none", "moustache", "beard", "goatee", "stubble"]
GLASSES = ["none", "round", "rectangular", "sunglasses"]

# Categorical attribute → {population: weights over its palette}. Private and public share one
# distribution (the attacker's data covers the target's attribute space); `shifted` tilts it.
_CATEGORICAL: dict[str, dict[str, Sequence[float]]] = {
    "skin": {"private": [1] * 8, "public": [1] * 8, "shifted": [3, 3, 3, 2, 1, 1, 1, 1]},
    "hair_colour": {"private": [4, 4, 4, 2, 2, 2, 3, 2, 1, 1, 1], "public": [4, 4, 4, 2, 2, 2, 3, 2, 1, 1, 1],
                    "shifted": [4, 4, 4, 3, 2, 2, 2, 3, 3, 0, 0]},
    "hair_style": {"private": [1, 4, 3, 3, 3, 1.5, 1, 2], "public": [1, 4, 3, 3, 3, 1.5, 1, 2],
                   "shifted": [1, 4, 2, 3, 4, 1, 0.3, 3]},
    "eye_colour": {"private": [3, 3, 2, 2, 3, 2], "public": [3, 3, 2, 2, 3, 2],
                   "shifted": [3, 3, 2, 2, 3, 2]},
    "lips": {"private": [1] * 4, "public": [1] * 4, "shifted": [1] * 4},
    "nose": {"private": [1] * 3, "public": [1] * 3, "shifted": [1] * 3},
    "facial_hair": {"private": [11, 2, 3, 2, 2], "public": [11, 2, 3, 2, 2], "shifted": [9, 3, 4, 2, 2]},
    "glasses": {"private": [11, 3, 4, 2], "public": [11, 3, 4, 2], "shifted": [12, 4, 3, 1]},
    "frame": {"private": [1] * 5, "public": [1] * 5, "shifted": [1] * 5},
}

# Continuous attribute → (low, high, per-image jitter as a fraction of the range (std)).
# The ranges overlap for everybody; the per-image jitter blurs every single value further.
_CONTINUOUS: dict[str, tuple[float, float, float]] = {
    "face_w": (0.66, 0.84, 0.04),
    "face_h": (0.86, 1.02, 0.04),
    "jaw": (0.04, 0.40, 0.04),
    "skin_light": (-1.0, 1.0, 0.05),
    "hair_shade": (-1.0, 1.0, 0.05),
    "hair_volume": (0.0, 1.0, 0.05),
    "hair_part": (-1.0, 1.0, 0.03),
    "hairline": (-0.12, 0.12, 0.05),
    "eye_y": (-0.17, -0.03, 0.05),
    "eye_dx": (0.26, 0.38, 0.04),
    "eye_w": (0.11, 0.165, 0.04),
    "eye_ratio": (0.42, 0.72, 0.05),
    "brow_gap": (0.13, 0.22, 0.05),
    "brow_thick": (0.028, 0.07, 0.05),
    "brow_tilt": (-0.30, 0.35, 0.05),
    "brow_len": (0.95, 1.45, 0.05),
    "nose_y": (0.17, 0.31, 0.04),
    "nose_size": (0.8, 1.3, 0.05),
    "mouth_y": (0.46, 0.60, 0.04),
    "mouth_w": (0.15, 0.29, 0.04),
    "lip_t": (0.022, 0.05, 0.05),
    "ear_size": (0.75, 1.3, 0.05),
    "blush": (0.0, 1.0, 0.08),
    "beard_line": (-0.1, 0.1, 0.05),
}
CATEGORICAL = tuple(_CATEGORICAL)
CONTINUOUS = tuple(_CONTINUOUS)
_PALETTE_NAMES = {"hair_colour": HAIR_NAMES, "hair_style": HAIR_STYLES, "eye_colour": EYE_NAMES,
                  "nose": NOSES, "facial_hair": FACIAL_HAIR, "glasses": GLASSES}

# ------------------------------------------------------------------------------ counter-based RNG

_M64 = (1 << 64) - 1


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of `x + golden` on uint64 arrays (wrapping arithmetic)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_keys(*parts: Any) -> np.ndarray:
    """A uint64 hash of the broadcast integer `parts` (each an int or integer array)."""
    with np.errstate(over="ignore"):
        h = np.full((), 0x6A09E667F3BCC909, dtype=np.uint64)
        for p in parts:
            # Python ints may exceed int64 (e.g. a 64-bit seed); arrays wrap negatives (two's complement).
            if isinstance(p, (int, np.integer)):
                arr = np.uint64(int(p) & _M64)
            else:
                arr = np.asarray(p).astype(np.uint64)
            h = _splitmix(np.asarray(h ^ arr, dtype=np.uint64))
        return np.atleast_1d(h)


def _mix_int(x: int) -> int:
    """splitmix64 of a Python int (for combining scalar stream ids)."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@functools.cache
def _stream(name: str, j: int = 0) -> np.uint64:
    """A stable 64-bit stream id for draw `j` of attribute `name` (adding a name never reshuffles others)."""
    return np.uint64(_mix_int((zlib.crc32(name.encode()) << 16) + j))


class _Draws:
    """Uniform / normal-ish / categorical draws for a vector of keys, one independent stream per name."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys

    def bits(self, name: str, j: int = 0) -> np.ndarray:
        """64 random bits (N,) uint64 for draw `j` of `name`."""
        with np.errstate(over="ignore"):
            return _splitmix(self.keys ^ _stream(name, j))

    def u(self, name: str, j: int = 0) -> np.ndarray:
        """Uniform [0, 1) float64 (N,)."""
        return (self.bits(name, j) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def uniform(self, name: str, lo: float, hi: float) -> np.ndarray:
        """Uniform [lo, hi) float64 (N,)."""
        return lo + (hi - lo) * self.u(name)

    def normal(self, name: str) -> np.ndarray:
        """Approximately standard normal (Irwin–Hall of 4 uniforms, bounded by ±3.5) float64 (N,)."""
        # Only arithmetic: no log/cos whose SIMD and scalar paths might round differently.
        h = self.bits(name)
        m = np.uint64(0xFFFF)
        s = ((h & m) + ((h >> np.uint64(16)) & m) + ((h >> np.uint64(32)) & m) + (h >> np.uint64(48)))
        return ((s.astype(np.float64) + 2.0) * (1.0 / 65536.0) - 2.0) * math.sqrt(3.0)

    def bernoulli(self, name: str, p: float) -> np.ndarray:
        """Boolean (N,) that is True with probability `p`."""
        return self.u(name) < p

    def choice(self, name: str, weights: Sequence[float]) -> np.ndarray:
        """Index into `weights` (N,) int64 drawn proportionally to `weights`."""
        cum = np.cumsum(np.asarray(weights, dtype=np.float64))
        idx = np.searchsorted(cum / cum[-1], self.u(name), side="right")
        return np.minimum(idx, len(cum) - 1).astype(np.int64)


def _seed_word(seed: int) -> int:
    """The dataset seed as an unsigned 64-bit word (any Python int is accepted)."""
    return int(seed) & _M64


def _population_id(population: str) -> int:
    if population not in POPULATIONS:
        hint = suggest(population, list(POPULATIONS))
        raise DataError(f"synthfaces: unknown population '{population}'{hint}",
                        fix=f"use one of: {', '.join(POPULATIONS)}")
    return POPULATIONS[population]


# ------------------------------------------------------------------------------------- identities


def identity_attributes(identities: Sequence[int] | np.ndarray, *, seed: int = 0,
                        population: str = "private") -> dict[str, np.ndarray]:
    """The fixed attributes of `identities` (K,) of a population: name → array (K,).

    Categorical attributes are int64 palette indices, continuous ones float64; the dict also holds
    `identity` (K,) int64 and `population` (K,) int64 (the stream id), which the renderer keys on.
    """
    ids = np.asarray(identities, dtype=np.int64).reshape(-1)
    if ids.size and ids.min() < 0:
        raise DataError("synthfaces: identity indices must be non-negative", fix="pass indices 0, 1, 2, ...")
    pop = _population_id(population)
    d = _Draws(hash_keys(_seed_word(seed), pop, 0x1D, ids))
    out: dict[str, np.ndarray] = {"identity": ids.copy(), "population": np.full(ids.shape, pop, np.int64)}
    for name, weights in _CATEGORICAL.items():
        out[name] = d.choice(name, weights[population])
    for name, (lo, hi, _) in _CONTINUOUS.items():
        out[name] = d.uniform(name, lo, hi)
    return out


def attribute_matrix(attrs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Identity attributes as a float64 matrix (K, A): categorical columns first, then continuous."""
    return np.stack([np.asarray(attrs[n], dtype=np.float64) for n in (*CATEGORICAL, *CONTINUOUS)], axis=1)


def describe_identity(identity: int, *, seed: int = 0, population: str = "private") -> dict[str, Any]:
    """Human-readable attributes of one identity (palette names for categorical ones, rounded floats)."""
    attrs = identity_attributes([identity], seed=seed, population=population)
    out: dict[str, Any] = {"identity": int(identity), "population": population}
    for name in CATEGORICAL:
        v = int(attrs[name][0])
        names = _PALETTE_NAMES.get(name)
        out[name] = names[v] if names else v
    for name in CONTINUOUS:
        out[name] = round(float(attrs[name][0]), 4)
    return out


def take_rows(attrs: Mapping[str, np.ndarray], rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Select rows of an attribute table (e.g. repeat each identity once per image)."""
    idx = np.asarray(rows, dtype=np.int64)
    return {k: np.asarray(v)[idx] for k, v in attrs.items()}


# ------------------------------------------------------------------------------ per-image params


def _poly_cos_sin(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of small angles |t| ≤ 0.4 by Taylor polynomials (pure arithmetic, error < 1e-9)."""
    t2 = t * t
    cos = 1.0 - t2 / 2.0 + t2 * t2 / 24.0 - t2 * t2 * t2 / 720.0 + t2 * t2 * t2 * t2 / 40320.0
    sin = t * (1.0 - t2 / 6.0 + t2 * t2 / 120.0 - t2 * t2 * t2 / 5040.0 + t2 * t2 * t2 * t2 / 362880.0)
    return cos, sin


def _image_draws(attrs: Mapping[str, np.ndarray], image_indices: np.ndarray, seed: int) -> _Draws:
    """The random streams of N images, keyed by (seed, population, identity, image index)."""
    return _Draws(hash_keys(_seed_word(seed), np.asarray(attrs["population"], dtype=np.int64), 0x1A,
                            np.asarray(attrs["identity"], dtype=np.int64), image_indices))


def image_attributes(attrs: Mapping[str, np.ndarray], image_indices: Sequence[int] | np.ndarray, *,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """The attributes as seen in N images (N,): the identity's values plus this image's jitter.

    Continuous attributes get per-image noise (std = a fixed fraction of the population range);
    `glasses` is 0 in the ~8 % of images where a wearer took them off; other categoricals are fixed.
    """
    idx = np.asarray(image_indices, dtype=np.int64).reshape(-1)
    d = _image_draws(attrs, idx, seed)
    out = {name: np.asarray(attrs[name], dtype=np.int64).copy() for name in CATEGORICAL}
    out["glasses"] = out["glasses"] * (~d.bernoulli("glasses_off", 0.08))
    for name, (lo, hi, jit) in _CONTINUOUS.items():
        out[name] = np.asarray(attrs[name], dtype=np.float64) + jit * (hi - lo) * d.normal("jit_" + name)
    return out


def _image_params(attrs: Mapping[str, np.ndarray], image_indices: np.ndarray, seed: int,
                  resolution: int) -> dict[str, np.ndarray]:
    """Everything the rasteriser needs for N images, as float64 arrays (N,) or (N, 3) colours."""
    shifted = np.asarray(attrs["population"]) == POPULATIONS["shifted"]
    d = _image_draws(attrs, image_indices, seed)
    a = image_attributes(attrs, image_indices, seed=seed)  # identity attributes, jittered per image
    cat = {name: a[name] for name in CATEGORICAL}
    p: dict[str, np.ndarray] = {}

    def col_jitter(name: str, amount: float) -> np.ndarray:
        return np.stack([d.normal(f"{name}{c}") for c in range(3)], axis=1) * amount

    # --- pose
    scale = d.uniform("scale", 0.56, 0.72)
    theta = d.uniform("rot", -0.15, 0.15)
    cos, sin = _poly_cos_sin(theta)
    p["tx"], p["ty"] = d.uniform("tx", -0.12, 0.12), d.uniform("ty", -0.1, 0.1) + 0.04
    p["cos"], p["sin"] = cos, sin
    p["inv_scale"] = 1.0 / scale
    sharp = d.uniform("sharp", 0.7, 1.0)  # < 1 softens every edge (defocus / low-res capture)
    p["inv_aa"] = scale * resolution / 2.0 * sharp  # 1 / (pixel size in face units)
    yaw = d.uniform("yaw", -1.0, 1.0)
    p["yaw_eye"], p["yaw_nose"], p["yaw_mouth"] = 0.07 * yaw, 0.13 * yaw, 0.09 * yaw
    p["yaw_face"], p["yaw"] = -0.03 * yaw, yaw

    # --- face shape and skin
    p["face_w"], p["face_h"], p["jaw"] = a["face_w"], a["face_h"], np.clip(a["jaw"], 0.0, 0.6)
    skin = SKIN[cat["skin"]] * (1.0 + 0.05 * a["skin_light"])[:, None] + col_jitter("skin", 0.012)
    p["skin"] = np.clip(skin, 0.0, 1.0)
    p["ear_w"] = 0.085 * a["ear_size"]
    p["ear_h"] = 0.15 * a["ear_size"]
    p["ear_y"] = a["eye_y"] + 0.12
    ear_t = np.clip(p["ear_y"] / p["face_h"], 0.0, 1.0)
    p["ear_x"] = p["face_w"] * (1.0 - p["jaw"] * ear_t * ear_t) + 0.01

    # --- hair
    hair = HAIR[cat["hair_colour"]] * (1.0 + 0.1 * a["hair_shade"])[:, None] + col_jitter("hair", 0.015)
    p["hair"] = np.clip(hair, 0.0, 1.0)
    style = cat["hair_style"]
    p["hair_style"] = style.astype(np.float64)
    p["hair_freq"] = d.uniform("hair_freq", 7.0, 10.0)
    fw, fh = p["face_w"], p["face_h"]
    vol = 0.08 + 0.12 * np.clip(a["hair_volume"], 0.0, 1.0)
    p["hair_volume_u"], p["hairline"] = vol, a["hairline"]
    part = a["hair_part"]
    # Hair behind the head (0 bald, 1 short, 2 fringe, 3 side part, 4 long, 5 afro, 6 mohawk, 7 bun).
    long_part = (style == 3) & (np.abs(part) > 0.3)
    p["has_back"] = (np.isin(style, [2, 4, 5]) | long_part).astype(np.float64)
    p["back_h"] = np.select([style == 2, style == 3, style == 4, style == 5],
                            [fh * 0.95, fh * 1.6, fh * 1.9, fh * 1.25 + vol], 1.0)
    p["back_w"] = fw + vol + np.select([style == 4, style == 5], [0.06, 0.15], 0.0)
    p["back_cy"] = np.select([style == 2, style == 3, style == 4, style == 5], [0.05, 0.5, 0.75, -0.18], 0.0)
    # The cap on top of the head, cut by a hairline y = hl0 + hl1·(x/fw) + hl2·(x/fw)².
    p["has_cap"] = (~np.isin(style, [0, 6])).astype(np.float64)
    afro = (style == 5).astype(np.float64)
    p["cap_cy"] = -0.08 - 0.12 * afro
    p["cap_ax"] = fw + vol + 0.25 * afro
    p["cap_ay"] = fh + vol + 0.2 * afro
    p["hl0"] = a["hairline"] + np.select([style == 2, style == 3], [-0.28, -0.36], -0.55)
    p["hl1"] = np.where(style == 3, 0.25 * part, 0.0)
    p["hl2"] = np.select([style == 2, style == 3], [0.0, 0.22], 0.32)

    # --- eyes, brows, nose, mouth
    p["eye_y"], p["eye_dx"], p["eye_w"] = a["eye_y"], a["eye_dx"], a["eye_w"]
    blink = d.bernoulli("blink", 0.06)
    openness = np.where(blink, 0.15, d.uniform("eye_open", 0.6, 1.15))
    p["eye_h"] = a["eye_w"] * np.clip(a["eye_ratio"], 0.3, 0.9) * openness
    p["iris_r"] = a["eye_w"] * np.clip(a["eye_ratio"], 0.3, 0.9) * 0.95
    p["pupil_r"] = p["iris_r"] * 0.45
    p["gaze_x"] = d.uniform("gaze_x", -0.35, 0.35) * a["eye_w"]
    p["gaze_y"] = d.uniform("gaze_y", -0.15, 0.15) * a["eye_w"]
    p["eye_col"] = np.clip(EYES[cat["eye_colour"]] + col_jitter("eye", 0.02), 0.0, 1.0)
    raise_ = d.uniform("brow_raise", -0.03, 0.07)
    p["brow_y"] = a["eye_y"] - a["brow_gap"] - raise_
    p["brow_t"] = a["brow_thick"]
    p["brow_len"] = a["eye_w"] * a["brow_len"]
    p["brow_tilt"] = a["brow_tilt"] - 0.8 * raise_
    p["brow_col"] = np.clip(p["hair"] * 0.75 + 0.04, 0.0, 1.0)
    nose = cat["nose"]
    size = a["nose_size"]
    p["nose_w"] = np.choose(nose, [0.055, 0.04, 0.085]) * size
    p["nose_h"] = np.choose(nose, [0.05, 0.12, 0.055]) * size
    p["nose_y"] = a["nose_y"] - np.where(nose == 1, 0.06, 0.0)
    smile = d.uniform("smile", -0.4, 1.0)
    p["mouth_y"], p["mouth_w"] = a["mouth_y"], a["mouth_w"] * (1.0 + 0.12 * smile)
    p["smile"] = smile * 0.12
    p["lip_t"] = a["lip_t"]
    mouth_open = np.where(d.bernoulli("mouth_open_p", 0.3), d.uniform("mouth_open", 0.3, 1.0), 0.0)
    p["mouth_open"] = mouth_open * 0.07
    lips = LIPS[cat["lips"]] * 0.6 + p["skin"] * 0.4
    p["lip_col"] = np.clip(lips + col_jitter("lip", 0.015), 0.0, 1.0)
    p["blush"] = np.clip(a["blush"], 0.0, 1.0) * 0.35

    # --- facial hair (0 none, 1 moustache, 2 beard, 3 goatee, 4 stubble) and glasses
    fhair = cat["facial_hair"]
    p["moustache"] = np.isin(fhair, [1, 2, 3]).astype(np.float64)
    p["beard"] = np.choose(fhair, [0.0, 0.0, 0.95, 0.0, 0.33])
    p["goatee"] = (fhair == 3).astype(np.float64)
    p["beard_top"] = a["mouth_y"] - 0.18 + a["beard_line"]
    p["glasses"] = cat["glasses"].astype(np.float64)
    p["frame_col"] = FRAMES[cat["frame"]]

    # --- lighting, colour grading, background, clothes, occluder, noise
    p["amb"] = d.uniform("amb", 0.62, 0.8)
    dif = d.uniform("dif", 0.15, 0.35)
    p["lx"], p["ly"], p["lz"] = dif * d.uniform("lx", -0.8, 0.8), dif * d.uniform("ly", -0.8, 0.3), dif * 0.6
    warm = d.uniform("warm", -0.08, 0.08)
    bright = d.uniform("bright", 0.88, 1.1)
    p["tint"] = np.stack([bright * (1 + warm), bright * (1 + 0.2 * warm), bright * (1 - warm)], axis=1)
    p["grad_x"], p["grad_y"] = d.uniform("gx", -0.15, 0.15), d.uniform("gy", -0.15, 0.15)
    p["contrast"] = d.uniform("contrast", 0.85, 1.12)
    p["saturation"] = d.uniform("saturation", 0.75, 1.2)
    bg1 = np.stack([d.u(f"bg1{c}") for c in range(3)], axis=1)
    bg2 = np.stack([d.u(f"bg2{c}") for c in range(3)], axis=1)
    p["bg1"], p["bg2"] = 0.05 + 0.9 * bg1, 0.05 + 0.9 * bg2
    p["bg_gx"], p["bg_gy"] = d.uniform("bg_gx", -0.7, 0.7), d.uniform("bg_gy", -0.7, 0.7)
    p["stripe_amp"] = np.where(d.bernoulli("stripes", 0.3), d.uniform("stripe_amp", 0.05, 0.3), 0.0)
    p["stripe_fx"], p["stripe_fy"] = d.uniform("stripe_fx", -5.0, 5.0), d.uniform("stripe_fy", -5.0, 5.0)
    p["shirt"] = 0.05 + 0.9 * np.stack([d.u(f"shirt{c}") for c in range(3)], axis=1)
    p["shirt_y"] = d.uniform("shirt_y", 1.5, 1.75)
    occ = d.bernoulli("occluder", 0.25)
    p["occ"] = occ.astype(np.float64)
    p["occ_box"] = d.bernoulli("occ_box", 0.5).astype(np.float64)
    p["occ_x"], p["occ_y"] = d.uniform("occ_x", -0.9, 0.9), d.uniform("occ_y", -0.9, 0.9)
    p["occ_a"], p["occ_b"] = d.uniform("occ_a", 0.1, 0.32), d.uniform("occ_b", 0.1, 0.32)
    p["occ_col"] = np.stack([d.u(f"occ{c}") for c in range(3)], axis=1)
    p["noise"] = d.uniform("noise", 0.0, 0.05)

    # --- the shifted ("painted portrait") style: varnish, dark backgrounds, outlines, canvas weave
    p["paint"] = shifted.astype(np.float64)
    dark = 0.08 + 0.35 * np.stack([d.u(f"pbg{c}") for c in range(3)], axis=1) * np.array([1.0, 0.85, 0.6])
    p["bg1"] = np.where(shifted[:, None], dark, p["bg1"])
    p["bg2"] = np.where(shifted[:, None], dark * 0.55, p["bg2"])
    p["shirt"] = np.where(shifted[:, None], p["shirt"] * 0.35, p["shirt"])
    p["stripe_amp"] = np.where(shifted, 0.0, p["stripe_amp"])
    p["canvas_f"] = d.uniform("canvas_f", 10.0, 16.0)
    return p


# ------------------------------------------------------------------------------------- rasteriser
# Every pixel operation below is a single correctly rounded float32 op (mostly in place, to keep the
# working set in cache); per-image values are (B, 1, 1) tensors, colours (B, 3, 1, 1). Optional
# layers are skipped when no image of the chunk has them — exact, because a layer drawn with zero
# coverage or zero strength adds exactly 0 to every pixel.

_WHITE = (0.96, 0.95, 0.92)
_BLUSH = (0.9, 0.35, 0.4)


def _rgb(c: Sequence[float]) -> torch.Tensor:
    return torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1)


class _Raster:
    """One chunk being drawn: face-frame coordinates x, y (B, R, R), image coordinates and the canvas."""

    def __init__(self, p: Mapping[str, torch.Tensor], resolution: int):
        r = resolution
        grid = (torch.arange(r, dtype=torch.float32) + 0.5) * (2.0 / r) - 1.0
        self.X = grid.view(1, 1, r)  # image x in [-1, 1], left → right
        self.Y = grid.view(1, r, 1)  # image y in [-1, 1], top → bottom
        dx, dy = self.X - p["tx"], self.Y - p["ty"]  # (B, 1, R), (B, R, 1)
        # Rotate into the face frame and undo the face scale: x, y are face units, (0, 0) = face centre.
        self.x = (p["cos"] * p["inv_scale"] * dx) + (p["sin"] * p["inv_scale"] * dy)
        self.y = (p["cos"] * p["inv_scale"] * dy) - (p["sin"] * p["inv_scale"] * dx)
        self.inv_aa = p["inv_aa"]  # 1 / pixel size, in face units

    def ellipse(self, x: torch.Tensor, y: torch.Tensor, cx: Any, cy: Any, a: torch.Tensor, b: torch.Tensor,
                soft: float = 1.0) -> torch.Tensor:
        """Antialiased coverage (B, R, R) in [0, 1] of the ellipse centred (cx, cy) with semi-axes (a, b)."""
        u = (x - cx).mul_(1.0 / a)
        v = (y - cy).mul_(1.0 / b)
        q = u.mul_(u).add_(v.mul_(v)).sqrt_()
        k = torch.minimum(a, b) * self.inv_aa * (1.0 / soft)  # (q − 1)·min(a, b) ≈ signed distance
        return q.mul_(-k).add_(0.5 + k).clamp_(0.0, 1.0)

    def edge(self, dist: torch.Tensor, soft: float = 1.0) -> torch.Tensor:
        """Coverage of the region where the signed distance `dist` (a temporary, reused) is negative."""
        return dist.mul_(self.inv_aa * (-1.0 / soft)).add_(0.5).clamp_(0.0, 1.0)


def _tri(u: torch.Tensor) -> torch.Tensor:
    """Triangle wave in [0, 1] with period 1, computed in place on the temporary `u`."""
    return u.sub_(torch.floor(u)).sub_(0.5).abs_().mul_(2.0)


def _paint(img: torch.Tensor, cov: torch.Tensor, col: torch.Tensor) -> None:
    """Alpha-composite colour `col` ((B, 3, 1, 1) or (B, 3, R, R)) with coverage `cov` (B, R, R) in place."""
    img.add_((col - img).mul_(cov.unsqueeze(1)))


def _darken(img: torch.Tensor, cov: torch.Tensor, amount: Any) -> None:
    """Multiply the canvas by (1 − amount·cov): shadows and near-black shapes, cheaper than `_paint`."""
    img.mul_(cov.mul_(-amount).add_(1.0).unsqueeze(1))


def _rasterise(p: Mapping[str, torch.Tensor], resolution: int) -> torch.Tensor:
    """Draw a chunk of faces from per-image params → float32 (B, 3, R, R), roughly in [0, 1]."""
    rs = _Raster(p, resolution)
    x, y, X, Y = rs.x, rs.y, rs.X, rs.Y
    one = torch.ones_like(p["face_w"])
    style = p["hair_style"]

    # Background: two-colour gradient + optional stripes.
    dc = p["bg2"] - p["bg1"]
    g = ((X * p["bg_gx"]) + (Y * p["bg_gy"])).add_(0.5).clamp_(0.0, 1.0)
    img = (dc * g.unsqueeze(1)).add_(p["bg1"])
    if bool((p["stripe_amp"] > 0).any()):
        stripes = _tri((X * p["stripe_fx"]) + (Y * p["stripe_fy"])).sub_(0.5).mul_(p["stripe_amp"])
        img.add_(stripes.unsqueeze(1) * (dc + 0.3))

    # Hair colour with a soft strand texture (and curls for the afro).
    strands = _tri((x / (y + 1.7).clamp_(min=0.1)).mul_(p["hair_freq"]))  # fanning out from above the crown
    if bool((style == 5).any()):
        curls = _tri(y * p["hair_freq"]).mul_((style == 5).float())
        strands.add_(curls.mul_(1.0 - strands))
    hair_px = p["hair"] * strands.mul_(0.14).add_(0.86).unsqueeze(1)

    fw, fh, vol = p["face_w"], p["face_h"], p["hair_volume_u"]

    # Hair behind the head: fringe → bob to the jaw, side part / long → to the shoulders, afro, bun.
    back = rs.ellipse(x, y, 0.0, p["back_cy"], p["back_w"], p["back_h"]).mul_(p["has_back"])
    if bool((style == 7).any()):
        bun = rs.ellipse(x, y, 0.0, -fh - 0.12 - 0.1 * vol, 0.28 * one, 0.22 * one).mul_((style == 7).float())
        back = torch.maximum(back, bun)
    _paint(img, back, hair_px)

    # Shoulders / shirt and neck.
    _paint(img, rs.ellipse(x, y, 0.0, p["shirt_y"], 1.5 * one, 0.8 * one), p["shirt"])
    fx = x - p["yaw_face"]
    neck = rs.edge(torch.maximum(fx.abs().sub_(fw * 0.5), (0.4 - y)))
    _paint(img, neck, p["skin"] * 0.78)

    # Ears (behind the face); the one the head turns towards narrows.
    ex = (x - p["yaw_eye"]).abs_()
    ear_w = p["ear_w"] * (1.0 - 0.45 * (torch.sign(x) * p["yaw"]).clamp_(0.0, 1.0))
    ears = rs.ellipse(ex, y, p["ear_x"], p["ear_y"], ear_w, p["ear_h"])
    _paint(img, ears, p["skin"] * 0.85)

    # Face: an ellipse narrowing towards the chin, shaded as an ellipsoid lit from (lx, ly, lz).
    yn = y * (1.0 / fh)
    t = yn.clamp(0.0, 1.0)
    xn = fx.div_(t.mul_(t).mul_(-p["jaw"]).add_(1.0).mul_(fw))
    q2 = (xn * xn).add_(yn * yn)
    q = q2.sqrt()
    kf = fw * 0.85 * rs.inv_aa
    face = (q * -kf).add_(0.5 + kf).clamp_(0.0, 1.0)
    nz = q2.mul_(-1.0).add_(1.0).clamp_(0.0, 1.0).sqrt_()
    shade = nz.mul_(p["lz"]).add_(xn.mul_(p["lx"])).add_(yn.mul_(p["ly"])).add_(p["amb"]).clamp_(0.35, 1.5)
    _paint(img, face, p["skin"] * shade.unsqueeze(1))
    if bool((p["paint"] > 0).any()):  # painted style: a dark contour along the face edge
        _darken(img, rs.edge(q.sub_(1.0).abs_().mul_(fw).sub_(0.018)), 0.6 * p["paint"])

    # Blush on the cheeks (soft, only on the face).
    cheeks = rs.ellipse(ex, y, p["eye_dx"] + 0.04, p["eye_y"] + 0.3, 0.13 * one, 0.09 * one, soft=4.0)
    _paint(img, cheeks.mul_(face).mul_(p["blush"]), _rgb(_BLUSH))

    # Eyes: dark lash rim, white, iris clipped to the white, pupil.
    _darken(img, rs.ellipse(ex, y, p["eye_dx"], p["eye_y"], p["eye_w"] + 0.025, p["eye_h"] + 0.025), 0.8)
    white = rs.ellipse(ex, y, p["eye_dx"], p["eye_y"], p["eye_w"], p["eye_h"])
    _paint(img, white, _rgb(_WHITE))
    xs = x - p["yaw_eye"]
    lx = xs - torch.sign(xs).mul_(p["eye_dx"])  # x relative to the nearer eye, not mirrored: gaze is shared
    icy = p["eye_y"] + p["gaze_y"]
    _paint(img, rs.ellipse(lx, y, p["gaze_x"], icy, p["iris_r"], p["iris_r"]).mul_(white), p["eye_col"])
    _darken(img, rs.ellipse(lx, y, p["gaze_x"], icy, p["pupil_r"], p["pupil_r"]).mul_(white), 0.92)

    # Brows: tilted, arched thick strokes above each eye.
    bx = ex - p["eye_dx"]
    by = (y - p["brow_y"]).add_(bx * p["brow_tilt"]).add_((bx * bx).mul_(0.9))
    _paint(img, rs.ellipse(bx, by, 0.0, 0.0, p["brow_len"], p["brow_t"]), p["brow_col"])

    # Nose: a soft shadow shape.
    _darken(img, rs.ellipse(x, y, p["yaw_nose"], p["nose_y"], p["nose_w"], p["nose_h"], soft=1.5), 0.33)

    # Mouth: a curved band (smile bends it, opening thickens it) and the dark opening.
    mx = (x - p["yaw_mouth"]).mul_(1.0 / p["mouth_w"])
    mx2 = mx * mx
    curve_d = (y - p["mouth_y"]).add_((1.0 - mx2).mul_(p["smile"])).abs_()
    lip_half = (mx2 * (-0.6 * p["lip_t"] - p["mouth_open"])).add_(p["lip_t"] + p["mouth_open"])
    mouth = rs.edge(torch.maximum(curve_d.sub_(lip_half), mx.abs_().sub_(1.0).mul_(p["mouth_w"])))
    _paint(img, mouth, p["lip_col"])
    if bool((p["mouth_open"] > 0).any()):
        inner = rs.ellipse(x, y, p["yaw_mouth"], p["mouth_y"] - 0.6 * p["smile"], p["mouth_w"] * 0.7,
                           p["mouth_open"] + 1e-3)
        _darken(img, inner.mul_((p["mouth_open"] > 0).float()), 0.75)

    # Facial hair: beard / stubble below a line through the cheeks, goatee, moustache.
    hairy = None
    if bool((p["beard"] > 0).any()):
        bxr = (x - p["yaw_mouth"]).mul_(1.0 / fw)
        beard = rs.edge((bxr.mul_(bxr).mul_(-0.25)).add_(y).sub_(p["beard_top"]).neg_())
        hairy = beard.mul_(face).mul_(p["beard"]).mul_(1.0 - mouth)
    if bool((p["goatee"] > 0).any()):
        goatee = rs.ellipse(x, y, p["yaw_mouth"], p["mouth_y"] + 0.2, 0.16 * one, 0.22 * one)
        goatee.mul_(face).mul_(p["goatee"]).mul_(1.0 - mouth)
        hairy = goatee if hairy is None else torch.maximum(hairy, goatee)
    if bool((p["moustache"] > 0).any()):
        moustache = rs.ellipse(x, y, p["yaw_mouth"], p["mouth_y"] - p["lip_t"] - 0.07, p["mouth_w"] * 0.95,
                               0.05 * one).mul_(p["moustache"])
        hairy = moustache if hairy is None else torch.maximum(hairy, moustache)

    # Hair on top of the head: a cap above a style-dependent hairline (none for bald / mohawk).
    cap = rs.ellipse(x, y, 0.0, p["cap_cy"], p["cap_ax"], p["cap_ay"]).mul_(p["has_cap"])
    xr = x * (1.0 / fw)
    xr2 = xr * xr
    # hairline(x) = h0 + h1·x + h2·x²  (receding temples, a straight fringe, or a tilted side part)
    hl = xr2.mul_(p["hl2"]).add_(xr.mul_(p["hl1"])).add_(p["hl0"])
    cap.mul_(rs.edge(hl.sub_(y).neg_()))
    if bool((style == 6).any()):
        mohawk = rs.edge(torch.maximum(x.abs().sub_(0.13 + 0.06 * vol), y - (p["hairline"] - 0.45)))
        mohawk.mul_(rs.ellipse(x, y, 0.0, -0.25, 0.5 * one, fh + 0.25 + vol)).mul_((style == 6).float())
        cap = torch.maximum(cap, mohawk)
    hairy = cap if hairy is None else torch.maximum(hairy, cap)
    _paint(img, hairy, hair_px)

    # Glasses: rings (round or rectangular) with a bridge; sunglasses darken the lenses.
    if bool((p["glasses"] > 0).any()):
        gx = ex - p["eye_dx"]
        gy = y - p["eye_y"]
        lw, lh = p["eye_w"] * 1.55, p["eye_w"] * 1.2
        gxn, gyn = gx * (1.0 / lw), gy * (1.0 / lh)
        round_d = gxn.mul_(gxn).add_(gyn.mul_(gyn)).sqrt_().sub_(1.0).mul_(lh)
        rect_d = torch.maximum(gx.abs(), gy.abs().sub_(lh * 0.85 - lw))
        rect_d.sub_(lw)
        is_round = (p["glasses"] == 1).float()
        lens_d = round_d.mul_(is_round).add_(rect_d.mul_(1.0 - is_round))
        if bool((p["glasses"] == 3).any()):
            _darken(img, rs.edge(lens_d.clone()), 0.9 * (p["glasses"] == 3).float())
        ring = rs.edge(lens_d.abs_().sub_(0.028))
        bridge = rs.edge(torch.maximum(ex.sub_(p["eye_dx"] - lw), gy.add_(0.03).abs_().sub_(0.022)))
        _paint(img, torch.maximum(ring, bridge).mul_((p["glasses"] > 0).float()), p["frame_col"])

    # Occluder: a box or a disc of a random colour, anywhere in the image (image units).
    if bool((p["occ"] > 0).any()):
        ox, oy = X - p["occ_x"], Y - p["occ_y"]
        box = torch.maximum(ox.abs(), oy.abs() - (p["occ_b"] - p["occ_a"])).sub_(p["occ_a"])
        oxn, oyn = ox * (1.0 / p["occ_a"]), oy * (1.0 / p["occ_b"])
        disc = ((oxn * oxn) + (oyn * oyn)).sqrt_().sub_(1.0).mul_(torch.minimum(p["occ_a"], p["occ_b"]))
        occ_d = box.mul_(p["occ_box"]).add_(disc.mul_(1.0 - p["occ_box"]))
        occ = occ_d.mul_(-resolution / 2.0).add_(0.5).clamp_(0.0, 1.0).mul_(p["occ"])
        _paint(img, occ, p["occ_col"])

    # Light colour, a global light gradient, saturation and contrast folded into one pass:
    # out_c = L·k·(s·T_c·img_c + (1 − s)·mean_c(T_c·img_c)) + (1 − k)/2
    tint = p["tint"]
    grey = img[:, 0] * tint[:, 0]
    grey.add_(img[:, 1] * tint[:, 1]).add_(img[:, 2] * tint[:, 2]).mul_((1.0 - p["saturation"]) * (1.0 / 3.0))
    img.mul_(tint * p["saturation"].unsqueeze(1)).add_(grey.unsqueeze(1))
    light = ((X * p["grad_x"]) + (Y * p["grad_y"])).add_(1.0).mul_(p["contrast"])
    img.mul_(light.unsqueeze(1)).add_((0.5 - 0.5 * p["contrast"]).unsqueeze(1))

    # Painted style: sepia varnish, vignette and a canvas weave.
    if bool((p["paint"] > 0).any()):
        paint = p["paint"].unsqueeze(1)
        lum = (img[:, 0] + img[:, 1]).add_(img[:, 2]).mul_(1.0 / 3.0)
        sepia = lum.unsqueeze(1) * _rgb((1.12, 0.95, 0.68))
        weave = _tri((X * p["canvas_f"]) + (Y * 0.3)).mul_(_tri((Y * p["canvas_f"]) - (X * 0.3))).sub_(0.25)
        vignette = ((X * X) + (Y * Y)).mul_(-0.45).add_(1.0)
        painted = img * 0.45
        painted.add_(sepia.mul_(0.55)).add_(0.03).mul_(vignette).add_(weave.mul_(0.07).unsqueeze(1))
        img.add_(painted.sub_(img).mul_(paint))
    return img


def _to_torch(params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """float64 (N,) / (N, 3) arrays → float32 tensors (N, 1, 1) / (N, 3, 1, 1) for broadcasting."""
    out = {}
    for k, v in params.items():
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        out[k] = t.view(-1, 3, 1, 1) if t.ndim == 2 else t.view(-1, 1, 1)
    return out


def _noise(keys: np.ndarray, channels: int, resolution: int) -> torch.Tensor:
    """Per-pixel zero-mean triangular noise (N, C, R, R) in (−1, 1), keyed by image and pixel."""
    count = channels * resolution * resolution
    words = np.arange((count + 1) // 2, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
    with np.errstate(over="ignore"):
        h = _splitmix(keys[:, None] ^ words[None, :])  # each 64-bit word gives two noise values
    m = np.uint64(0xFFFF)
    pair = np.empty(h.shape + (2,), dtype=np.float32)
    pair[..., 0] = ((h & m) + ((h >> np.uint64(16)) & m)).astype(np.float32)
    pair[..., 1] = (((h >> np.uint64(32)) & m) + (h >> np.uint64(48))).astype(np.float32)
    tri = pair.reshape(keys.shape[0], -1)[:, :count] + np.float32(1.0)
    tri = tri * np.float32(1.0 / 65536.0) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(tri)).view(-1, channels, resolution, resolution)


def _render_chunk(attrs: Mapping[str, np.ndarray], image_indices: np.ndarray, seed: int,
                  resolution: int) -> torch.Tensor:
    """Render one chunk (parameters, rasterisation, pixel noise, quantisation) → uint8 (B, 3, R, R)."""
    params = _image_params(attrs, image_indices, seed, resolution)
    img = _rasterise(_to_torch(params), resolution)
    keys = hash_keys(_seed_word(seed), attrs["population"], 0x0E, attrs["identity"], image_indices)
    sigma = torch.from_numpy((params["noise"] * 255.0).astype(np.float32)).view(-1, 1, 1, 1)
    img.mul_(255.0).add_(_noise(keys, 3, resolution).mul_(sigma)).add_(0.5).clamp_(0.0, 255.0)
    return img.to(torch.uint8)  # truncation of values ≥ 0.5-shifted = round half up


@contextmanager
def _intra_op_threads(n: int):
    """Temporarily set torch's intra-op thread count (restored on exit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render(attrs: Mapping[str, np.ndarray], image_indices: Sequence[int] | np.ndarray, *, resolution: int,
           seed: int = 0, chunk_size: int | None = None, workers: int | None = None) -> torch.Tensor:
    """Render image `image_indices[n]` of the identity in row n of `attrs` → uint8 (N, 3, R, R).

    `attrs` is a per-image attribute table (from `identity_attributes` + `take_rows`). The result for
    each image depends only on (seed, population, identity, image index) — not on `chunk_size`,
    `workers`, or which other images are rendered in the same call. Chunks (default 64k pixels,
    small enough to stay in cache) are drawn by `workers` threads (default: torch's thread count),
    each running torch single-threaded — elementwise ops on small tensors scale better that way.
    """
    idx = np.asarray(image_indices, dtype=np.int64).reshape(-1)
    n = idx.shape[0]
    if any(np.asarray(v).shape[0] != n for v in attrs.values()):
        raise ValueError("attrs rows and image_indices differ in length")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    chunk = chunk_size or max(1, (1 << 16) // (resolution * resolution))
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    workers = workers or torch.get_num_threads()
    out = torch.empty(n, 3, resolution, resolution, dtype=torch.uint8)

    def work(start: int) -> None:
        sl = slice(start, min(n, start + chunk))
        out[sl] = _render_chunk({k: np.asarray(v)[sl] for k, v in attrs.items()}, idx[sl], seed, resolution)

    starts = range(0, n, chunk)
    with _intra_op_threads(1):
        if workers <= 1 or len(starts) <= 1:
            for s in starts:
                work(s)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, starts))
    return out


def render_identities(identities: Sequence[int] | np.ndarray, image_indices: Sequence[int] | np.ndarray, *,
                      resolution: int, seed: int = 0, population: str = "private",
                      chunk_size: int | None = None, workers: int | None = None) -> torch.Tensor:
    """Render image `image_indices[n]` of identity `identities[n]` of `population` → uint8 (N, 3, R, R)."""
    ids = np.asarray(identities, dtype=np.int64).reshape(-1)
    uniq, inverse = np.unique(ids, return_inverse=True)
    attrs = take_rows(identity_attributes(uniq, seed=seed, population=population), inverse)
    return render(attrs, image_indices, resolution=resolution, seed=seed, chunk_size=chunk_size,
                  workers=workers)


# ------------------------------------------------------------------------------------------ splits


@dataclass(frozen=True)
class SynthFacesParams:
    """Dataset parameters (`dataset.params` of a card); each split uses only the counts it needs."""

    resolution: int = 32
    seed: int = 0
    num_private: int = 100
    train_per_class: int = 50
    test_per_class: int = 10
    num_public: int = 1000
    public_per_identity: int = 20
    num_shifted: int = 1000
    shifted_per_identity: int = 20


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(SynthFacesParams))
# The fields that decide each split's content (and therefore its cache key).
_SPLIT_FIELDS = {
    "private-train": ("num_private", "train_per_class"),
    "private-test": ("num_private", "test_per_class"),
    "public": ("num_public", "public_per_identity"),
    "public-shifted": ("num_shifted", "shifted_per_identity"),
}
_CLASS_PREFIX = {"private": "id", "public": "pub", "shifted": "shf"}


def check_params(kind: str, params: Mapping[str, Any]) -> SynthFacesParams:
    """Validate `dataset.params` into a SynthFacesParams; unknown or ill-typed values raise a DataError."""
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        name = unknown[0]
        raise DataError(f"dataset '{kind}' has no parameter '{name}'{suggest(name, list(PARAM_NAMES))}",
                        field=f"dataset.params.{name}", fix=f"use only: {', '.join(PARAM_NAMES)}")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"dataset '{kind}': parameter '{name}' must be an integer, got {value!r}",
                            field=f"dataset.params.{name}", fix=f"set `{name}` to an integer")
        if name != "seed" and value < 1:
            raise DataError(f"dataset '{kind}': parameter '{name}' must be at least 1, got {value!r}",
                            field=f"dataset.params.{name}", fix=f"set `{name}` to a positive integer")
    if params.get("test_per_class", 1) > TEST_OFFSET or params.get("train_per_class", 1) > TEST_OFFSET:
        raise DataError(f"dataset '{kind}': at most {TEST_OFFSET} images per class",
                        field="dataset.params.train_per_class", fix="use fewer images per class")
    return SynthFacesParams(**{k: int(v) for k, v in params.items()})


@dataclass(frozen=True)
class SplitPlan:
    """What a split holds: image n is image `image_indices[n]` of identity `identities[n]` of `population`."""

    split: str
    population: str
    identities: np.ndarray  # (N,) int64
    image_indices: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64: the identity's index within the split (== identities)
    class_names: list[str]


def split_plan(split: str, params: SynthFacesParams) -> SplitPlan:
    """The identities and image indices of `split`, class-major (all images of class 0 first)."""
    if split not in SPLITS:
        raise DataError(f"dataset 'synthfaces' has no split '{split}'{suggest(split, SPLITS)}",
                        field="dataset.split", fix=f"use one of: {', '.join(SPLITS)}")
    num_field, per_field = _SPLIT_FIELDS[split]
    k, per = getattr(params, num_field), getattr(params, per_field)
    population = SPLIT_POPULATION[split]
    ids = np.repeat(np.arange(k, dtype=np.int64), per)
    offset = TEST_OFFSET if split == "private-test" else 0
    image_indices = np.tile(np.arange(per, dtype=np.int64), k) + offset
    width = max(3 if population == "private" else 4, len(str(k - 1)))
    names = [f"{_CLASS_PREFIX[population]}{i:0{width}d}" for i in range(k)]
    return SplitPlan(split, population, ids, image_indices, ids.copy(), names)


def render_split(split: str, params: SynthFacesParams, *,
                 workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a whole split without the cache → (uint8 (N, 3, R, R), labels int64 (N,))."""
    plan = split_plan(split, params)
    k = len(plan.class_names)
    attrs = take_rows(identity_attributes(np.arange(k), seed=params.seed, population=plan.population),
                      plan.identities)
    images = render(attrs, plan.image_indices, resolution=params.resolution, seed=params.seed,
                    workers=workers)
    return images, torch.from_numpy(plan.labels)


# ------------------------------------------------------------------------------------------- cache


RENDERS = ArtifactCache("synthfaces")


def cache_key(split: str, params: SynthFacesParams) -> dict[str, Any]:
    """Everything that decides a split's bytes besides the code: split, resolution, seed, its counts."""
    key = {"format": CACHE_FORMAT, "split": split, "resolution": params.resolution, "seed": params.seed}
    key.update({f: getattr(params, f) for f in _SPLIT_FIELDS[split]})
    return key


def cache_artifact(split: str, params: SynthFacesParams) -> Artifact:
    """The split's cache entry: `cache_dir()/synthfaces/<split>-<R>px-<key>.safetensors` (+ sidecar)."""
    return RENDERS.artifact(f"{split}-{params.resolution}px", cache_key(split, params),
                            code=("mibench.data.synthfaces",))


def load_split(split: str, params: SynthFacesParams) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's (images uint8 (N, 3, R, R), labels (N,)) from the cache, rendering (and caching) on a miss.

    A cache file whose sha256 differs from its record is one clear error (delete it to re-render)."""
    art = cache_artifact(split, params)
    rendered: dict[str, torch.Tensor] = {}

    def build(a: Artifact):
        rendered["images"], rendered["labels"] = render_split(split, params)
        with atomic_path(a.file(".safetensors")) as tmp:
            save_file(rendered, str(tmp))
        return [".safetensors"], {"images": len(rendered["images"])}

    RENDERS.get_or_build(art, build)
    if rendered:
        return rendered["images"], rendered["labels"]
    # Read into memory (not memory-mapped): the tensors stay valid whatever happens to the file.
    tensors = load(art.file(".safetensors").read_bytes())
    images, labels = tensors["images"], tensors["labels"]
    plan = split_plan(split, params)
    r = params.resolution
    if (images.dtype != torch.uint8 or tuple(images.shape) != (len(plan.labels), 3, r, r)
            or not torch.equal(labels, torch.from_numpy(plan.labels))):
        raise DataError("cached synthfaces split does not match its layout", path=art.file(".safetensors"),
                        fix=f"delete {art.stem}* to re-render it")
    return images, labels


# ----------------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class AttributeSpec:
    """One identity attribute as a reader of images sees it: a palette index or a value in a range."""

    name: str
    kind: str  # 'categorical' or 'continuous'
    size: int = 1  # palette size (categorical)
    lo: float = 0.0  # range (continuous)
    hi: float = 1.0
    weights: tuple[float, ...] = ()  # the private population's palette weights (categorical)
    # The attribute is visible only where this categorical attribute is non-zero (a frame colour
    # needs glasses); elsewhere it is neither learned nor scored.
    visible_if: str | None = None

    def chance(self, tolerance: float) -> float:
        """P(a random other private identity matches this one): Σ w² for a palette; for a uniform
        range, P(|U − V| ≤ tolerance · range) = 2t − t²."""
        if self.kind == "categorical":
            w = np.asarray(self.weights, dtype=np.float64)
            w = w / w.sum()
            return float((w * w).sum())
        t = min(1.0, tolerance)
        return 2 * t - t * t

    def constant_guess(self, tolerance: float) -> float:
        """The accuracy of the best constant reading: the most common palette entry, or the range's
        centre (right within ± tolerance · range of a uniform value: 2t)."""
        if self.kind == "categorical":
            return max(self.weights) / sum(self.weights)
        return min(1.0, 2 * tolerance)


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    *(AttributeSpec(n, "categorical", len(w["private"]), weights=tuple(float(x) for x in w["private"]),
                    visible_if="glasses" if n == "frame" else None) for n, w in _CATEGORICAL.items()),
    *(AttributeSpec(n, "continuous", lo=lo, hi=hi) for n, (lo, hi, _) in _CONTINUOUS.items()),
)


@dataclass(frozen=True)
class SynthFacesTruth:
    """The generative ground truth of a synthfaces dataset: the attributes of every identity of its
    population and, per image, the attributes the renderer drew (`ImageDataset.ground_truth`)."""

    dataset: str
    params: SynthFacesParams
    population: str

    @property
    def attributes(self) -> tuple[AttributeSpec, ...]:
        """The attributes an identity is made of."""
        return ATTRIBUTES

    def class_attributes(self) -> dict[str, np.ndarray]:
        """The attributes of every class of this population: name → (K,)."""
        k = {"private": self.params.num_private, "public": self.params.num_public,
             "shifted": self.params.num_shifted}[self.population]
        return identity_attributes(np.arange(k), seed=self.params.seed, population=self.population)

    def split_with_attributes(self, split: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
        """A split's images (N, 3, R, R) uint8, labels (N,) and the attributes each image was drawn
        with (name → (N,): the identity's values with this image's jitter, glasses taken off, …)."""
        plan = split_plan(split, self.params)
        images, labels = load_split(split, self.params)
        k = len(plan.class_names)
        attrs = take_rows(identity_attributes(np.arange(k), seed=self.params.seed, population=plan.population),
                          plan.identities)
        return images, labels, image_attributes(attrs, plan.image_indices, seed=self.params.seed)

    def with_split(self, split: str) -> SynthFacesTruth:
        """The ground truth of another split of the same dataset."""
        return dataclasses.replace(self, population=SPLIT_POPULATION[split])


# --------------------------------------------------------------------------------- registered kinds

_DESCRIPTION = ("procedural cartoon face identities rendered at {r} px (embedded default): private-train / "
                "private-test = 100 target identities × 50 / 10 images, public = 1000 other identities "
                "× 20, public-shifted = 1000 more in a painted style")


def synthfaces(split: str, root: str | Path | None = None, *, name: str = "synthfaces",
               **params: Any) -> TensorImageDataset:
    """The synthfaces `split` as an in-memory dataset (rendered once, then cached on disk).

    `root` is ignored (nothing is read from disk). `params` are the fields of `SynthFacesParams`.
    Private splits are labelled 0..num_private−1 (class names "id000", …); `public` and
    `public-shifted` are labelled with their own identity index ("pub0000", … / "shf0000", …).
    """
    if split not in SPLITS:
        raise DataError(f"dataset '{name}' has no split '{split}'{suggest(split, SPLITS)}",
                        field="dataset.split", fix=f"use one of: {', '.join(SPLITS)}")
    cfg = check_params(name, params)
    images, labels = load_split(split, cfg)
    ds = TensorImageDataset(images, labels, split_plan(split, cfg).class_names, name=name, split=split)
    ds.ground_truth = SynthFacesTruth(name, cfg, SPLIT_POPULATION[split])
    return ds


@DATASETS.register("synthfaces32", splits=SPLITS, description=_DESCRIPTION.format(r=32), synthetic=True,
                   attack_preset="synthfaces")
def synthfaces32(split: str, root: str | Path | None = None, **params: Any) -> TensorImageDataset:
    """`synthfaces` at 32 px (override with `resolution=`)."""
    return synthfaces(split, root, name="synthfaces32", **{"resolution": 32, **params})


@DATASETS.register("synthfaces64", splits=SPLITS, description=_DESCRIPTION.format(r=64), synthetic=True,
                   attack_preset="synthfaces")
def synthfaces64(split: str, root: str | Path | None = None, **params: Any) -> TensorImageDataset:
    """`synthfaces` at 64 px (override with `resolution=`)."""
    return synthfaces(split, root, name="synthfaces64", **{"resolution": 64, **params})
