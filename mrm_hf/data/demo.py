"""A synthetic demo dataset of image–report records. It is NOT medical data and says nothing about real patients.

No chest X-ray may ship with the package, so the demo draws cartoon frontal chest radiographs (a bright body, two
dark lung fields, the heart and mediastinum, faint ribs, clavicles and noise) and writes a short MIMIC-like report for
each. Findings are drawn at known places and the report states them: a round opacity ("small nodule" or "large mass")
in the right or left, upper or lower lung zone, a small or large pleural effusion (fluid filling a costophrenic angle
with a meniscus), mild or moderate cardiomegaly (a wider heart), or nothing. Side, zone and size words in the report
can only be told from the image, which is what an image-conditioned masked language model has to learn.

Conventions:
- `side` is the patient's side, as in radiology reports: on a PA view the patient's right is on the image's left.
- `box` is (x0, y0, x1, y1) in fractions of the image width and height: the drawn finding's outline (an opacity's
  circle, the fluid's extent, the enlarged heart), whose soft edges may spill over by a pixel or two.
- The IMPRESSION names the kinds of finding but never their side, zone or size, so those words in the FINDINGS cannot
  be copied from the impression when both are masked independently.
- Record `i` of seed `s` is drawn from its own generator seeded with `(s, i)`: the same seed gives the same records
  whatever `num_records` is, and another seed gives an independent set (use it for held-out records).
"""

import io
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict, DatasetInfo, Features, Image, List, Value
from PIL import Image as PILImage


DEMO_DESCRIPTION = (
    "SYNTHETIC demo data, not medical data: cartoon chest radiographs drawn by mrm_hf.data.demo with random, "
    "seeded anatomy and findings (nodule, mass, pleural effusion, cardiomegaly), each with a template report that "
    "describes exactly what was drawn. For trying out MRM pre-training; it says nothing about real patients."
)

SIDES = ("right", "left")
ZONES = ("upper", "lower")
KINDS = ("nodule", "mass", "effusion", "cardiomegaly")
SIZES = {"nodule": ("small",), "mass": ("large",), "effusion": ("small", "large"), "cardiomegaly": ("mild", "moderate")}

FEATURES = Features(
    {
        "image": Image(),
        "report": Value("string"),
        "findings": List(
            {
                "kind": Value("string"),
                "side": Value("string"),
                "zone": Value("string"),
                "size": Value("string"),
                "box": List(Value("float32"), length=4),
            }
        ),
        "labels": List(Value("float32"), length=len(KINDS)),
    }
)

# Chance of 0, 1, 2 or 3 findings, and of each finding slot being picked (one opacity and one effusion per side).
NUM_FINDINGS_P = (0.3, 0.4, 0.22, 0.08)
SLOTS = (("opacity", "right"), ("opacity", "left"), ("effusion", "right"), ("effusion", "left"), ("cardiomegaly", None))
SLOT_P = (0.25, 0.25, 0.15, 0.15, 0.2)

# The heart's centre lies this many half-widths to the patient's left of the midline (about two thirds of the heart
# is on the left), and an enlarged heart is also this much taller.
HEART_SHIFT = 0.3
ENLARGED_HEART_HEIGHT = 1.1

_CHUNK = 32  # small enough for the working arrays to stay in cache


@dataclass(frozen=True)
class Chest:
    """The anatomy, exposure and noise of one synthetic radiograph; lengths are fractions of the image size."""

    center: float  # midline x
    half_width: float  # midline to the lateral chest wall
    medial: float  # midline to the medial lung edge (half the mediastinum)
    apex: float  # y of the lung apices
    base_right: float  # y of the right costophrenic angle
    base_left: float  # y of the left costophrenic angle
    dome: float  # height of the diaphragm domes above the angles
    heart_ratio: float  # cardiothoracic ratio
    heart_y: float
    heart_half_height: float
    shoulder: float  # midline to the shoulder edge
    shoulder_y: float
    neck: float
    clavicle_y: float
    background: float
    tissue: float
    air: float  # how much darker aerated lung is than soft tissue
    bone: float
    rib_period: float
    rib_phase: float
    texture: float
    gastric_bubble: float
    gain: float
    offset: float
    curve: float  # contrast: > 0 brightens the mid-tones, < 0 darkens them
    gradient: float
    noise: float
    noise_seed: int


@dataclass(frozen=True)
class Finding:
    """One drawn abnormality: what it is, where (patient's side, lung zone), how big, and how it is drawn."""

    kind: str
    size: str
    side: str | None
    zone: str | None
    box: tuple[float, float, float, float]
    x: float = 0.0  # opacity centre
    y: float = 0.0
    extent: float = 0.0  # opacity radius, effusion height at the chest wall, or cardiothoracic ratio
    density: float = 0.0

    def as_record(self) -> dict:
        """The columns of the `findings` feature."""
        return {"kind": self.kind, "side": self.side, "zone": self.zone, "size": self.size, "box": list(self.box)}


def sample_chest(rng: np.random.Generator) -> Chest:
    """Random but plausible anatomy, contrast and noise."""
    u = rng.uniform
    base_left = u(0.76, 0.83)
    return Chest(
        center=0.5 + u(-0.015, 0.015),
        half_width=u(0.31, 0.36),
        medial=u(0.055, 0.075),
        apex=u(0.14, 0.19),
        base_right=base_left - u(0.01, 0.03),  # the right hemidiaphragm sits higher
        base_left=base_left,
        dome=u(0.03, 0.055),
        heart_ratio=u(0.38, 0.47),
        heart_y=base_left - u(0.07, 0.1),
        heart_half_height=u(0.11, 0.14),
        shoulder=u(0.42, 0.47),
        shoulder_y=u(0.08, 0.12),
        neck=u(0.075, 0.095),
        clavicle_y=u(0.15, 0.19),
        background=u(0.02, 0.08),
        tissue=u(0.55, 0.68),
        air=u(0.36, 0.46),
        bone=u(0.06, 0.1),
        rib_period=u(0.065, 0.08),
        rib_phase=u(0.0, 1.0),
        texture=u(0.03, 0.06),
        gastric_bubble=u(0.08, 0.16) if rng.random() < 0.7 else 0.0,
        gain=u(0.85, 1.15),
        offset=u(-0.05, 0.05),
        curve=u(-0.3, 0.3),
        gradient=u(-0.06, 0.06),
        noise=u(0.01, 0.03),
        noise_seed=int(rng.integers(2**31)),
    )


def _lung_x(chest: Chest, side: str, fraction: float) -> float:
    """The x of a point `fraction` of the way from the medial to the lateral edge of one lung."""
    sign = -1.0 if side == "right" else 1.0
    return chest.center + sign * (chest.medial + fraction * (chest.half_width - chest.medial))


def _heart_box(chest: Chest, ratio: float) -> tuple[float, float, float, float]:
    """The box around an enlarged heart with this cardiothoracic ratio."""
    half_width, half_height = ratio * chest.half_width, ENLARGED_HEART_HEIGHT * chest.heart_half_height
    x = chest.center + HEART_SHIFT * half_width  # on the image, the patient's left is to the right
    return (x - half_width, chest.heart_y - half_height, x + half_width, chest.heart_y + half_height)


def sample_findings(rng: np.random.Generator, chest: Chest) -> list[Finding]:
    """Zero to three findings in distinct slots (at most one opacity and one effusion per side)."""
    count = rng.choice(len(NUM_FINDINGS_P), p=NUM_FINDINGS_P)
    findings = []
    for slot in sorted(rng.choice(len(SLOTS), size=count, replace=False, p=SLOT_P)):
        group, side = SLOTS[slot]
        if group == "opacity":
            kind = "mass" if rng.random() < 0.5 else "nodule"
            zone = ZONES[rng.integers(2)]
            radius = rng.uniform(0.075, 0.095) if kind == "mass" else rng.uniform(0.04, 0.055)
            height = chest.base_left - chest.apex
            y = chest.apex + height * (rng.uniform(0.3, 0.42) if zone == "upper" else rng.uniform(0.58, 0.7))
            lung_width = chest.half_width - chest.medial
            lo, hi = (radius + 0.01) / lung_width, 1 - (radius + 0.01) / lung_width
            x = _lung_x(chest, side, float(np.clip(rng.uniform(0.4, 0.7), lo, hi)))
            box = (x - radius, y - radius, x + radius, y + radius)
            findings.append(Finding(kind, SIZES[kind][0], side, zone, box, x, y, radius, rng.uniform(0.22, 0.32)))
        elif group == "effusion":
            size = SIZES["effusion"][rng.integers(2)]
            height = rng.uniform(0.07, 0.1) if size == "small" else rng.uniform(0.2, 0.28)
            base = chest.base_right if side == "right" else chest.base_left
            x0, x1 = sorted((_lung_x(chest, side, 0.0), _lung_x(chest, side, 1.0)))
            box = (x0, base - height, x1, base)
            findings.append(Finding("effusion", size, side, None, box, extent=height, density=rng.uniform(0.8, 0.95)))
        else:
            size = SIZES["cardiomegaly"][rng.integers(2)]
            ratio = rng.uniform(0.54, 0.6) if size == "mild" else rng.uniform(0.64, 0.7)
            box = _heart_box(chest, ratio)
            findings.append(Finding("cardiomegaly", size, None, None, box, extent=ratio))
    return findings


def _ramp(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """A soft inside (1) / outside (0) edge: a clipped linear ramp, much cheaper than a sigmoid."""
    ramp = signed_distance / softness
    ramp += 0.5
    return np.clip(ramp, 0.0, 1.0, out=ramp)


def _column(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _upsample_matrix(size: int, coarse: int) -> np.ndarray:
    """(size, coarse) weights of linear interpolation from a coarse grid to `size` pixels."""
    positions = np.linspace(0, coarse - 1, size)
    lower = np.minimum(np.floor(positions).astype(int), coarse - 2)
    weight = positions - lower
    matrix = np.zeros((size, coarse), dtype=np.float32)
    matrix[np.arange(size), lower] = 1 - weight
    matrix[np.arange(size), lower + 1] = weight
    return matrix


def _add_disc(image: np.ndarray, x: float, y: float, radius: float, amount: float, softness: float) -> None:
    """Add `amount` inside a soft-edged disc of one (size, size) image, touching only the pixels near it."""
    size = image.shape[-1]
    reach = radius + softness
    lo_col, hi_col = max(int((x - reach) * size), 0), min(math.ceil((x + reach) * size) + 1, size)
    lo_row, hi_row = max(int((y - reach) * size), 0), min(math.ceil((y + reach) * size) + 1, size)
    cols = (np.arange(lo_col, hi_col, dtype=np.float32) + 0.5) / size - x
    rows = (np.arange(lo_row, hi_row, dtype=np.float32) + 0.5) / size - y
    distance = np.sqrt(cols[None, :] ** 2 + rows[:, None] ** 2)
    image[lo_row:hi_row, lo_col:hi_col] += amount * _ramp(radius - distance, softness)


def _draw_chunk(chests: list[Chest], findings: list[list[Finding]], size: int) -> np.ndarray:
    """Render a batch of radiographs at once as (N, size, size) floats in [0, 1].

    Terms that vary along one axis only are kept as (N, 1, size) or (N, size, 1) arrays until they meet.
    """
    field = {name: _column([getattr(c, name) for c in chests]) for name in Chest.__dataclass_fields__}
    x = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, None, :]
    y = x.transpose(0, 2, 1)
    edge = 1.5 / size + 0.004  # edges blur over about 1.5 pixels, and a little more at high resolution
    cx, half_width, medial = field["center"], field["half_width"], field["medial"]
    offset = np.abs(x - cx)

    neck = _ramp(field["neck"] - offset, edge)
    shoulder_top = field["shoulder_y"] + 0.1 * np.clip(offset / field["shoulder"], 0, 1) ** 3
    body = np.maximum(neck, _ramp(field["shoulder"] - offset, edge) * _ramp(y - shoulder_top, edge))

    cardiomegaly = [next((f for f in fs if f.kind == "cardiomegaly"), None) for fs in findings]
    heart_ratio = _column([f.extent if f else c.heart_ratio for f, c in zip(cardiomegaly, chests)])
    enlarged = _column([ENLARGED_HEART_HEIGHT if f else 1.0 for f in cardiomegaly])
    heart_half_height = field["heart_half_height"] * enlarged
    heart_half_width = heart_ratio * half_width
    heart_x = cx + HEART_SHIFT * heart_half_width
    across_heart = 1 - ((x - heart_x) / heart_half_width) ** 2
    heart = _ramp(across_heart - ((y - field["heart_y"]) / heart_half_height) ** 2, 0.08)

    lung_width = half_width - medial
    height = field["base_left"] - field["apex"]
    apex_shape = 0.5 * lung_width * np.sqrt(np.clip((y - field["apex"]) / (0.35 * height), 0, 1))
    below_apex = _ramp(y - field["apex"], edge)
    air = np.zeros((len(chests), size, size), dtype=np.float32)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        across = (sign * (x - cx) - medial) / lung_width  # 0 at the medial edge, 1 at the chest wall
        base = field[f"base_{side}"]
        diaphragm = base - field["dome"] * np.sin(np.pi * np.clip(across, 0, 1))
        lung = _ramp(apex_shape - np.abs(across - 0.5) * lung_width, edge)
        lung *= _ramp(diaphragm - y, edge)
        lung *= below_apex
        effusions = [next((f for f in fs if f.kind == "effusion" and f.side == side), None) for fs in findings]
        wet = [i for i, f in enumerate(effusions) if f]
        if wet:
            fluid_height = _column([effusions[i].extent for i in wet])
            # The meniscus: fluid climbs the chest wall, so a small effusion first fills the costophrenic angle.
            level = base[wet] - fluid_height * (0.3 + 0.7 * np.clip(across[wet], 0, 1) ** 2)
            fluid = _ramp(y - level, edge + 0.01)
            lung[wet] *= 1 - _column([effusions[i].density for i in wet]) * fluid
        air += lung
    air *= 1 - heart

    rib_phase = y / field["rib_period"] + field["rib_phase"] - 0.35 * offset / field["rib_period"]
    rib_phase -= np.floor(rib_phase) + 0.5
    rib = np.clip(1 - (rib_phase / 0.2) ** 2, 0, 1) ** 2
    spine = _ramp(0.028 - offset, edge)
    clavicle_y = field["clavicle_y"] - 0.05 * (offset - 0.04) / 0.26
    clavicles = _ramp(0.012 - np.abs(y - clavicle_y), edge) * (_ramp(offset - 0.04, edge) * _ramp(0.3 - offset, edge))
    hilum_y = np.exp(-((y - 0.45) ** 2) / 0.003)
    hila = hilum_y * (np.exp(-((offset - medial - 0.05) ** 2) / 0.003))

    noise_rngs = [np.random.default_rng(c.noise_seed) for c in chests]
    upsample = _upsample_matrix(size, 6)
    texture = upsample @ np.stack([r.standard_normal((6, 6), dtype=np.float32) for r in noise_rngs]) @ upsample.T
    pixel_noise = np.stack([r.standard_normal((size, size), dtype=np.float32) for r in noise_rngs])

    image = field["background"] + (field["tissue"] - field["background"]) * body
    image += field["bone"] * (spine + 0.8 * clavicles) * body
    image += (field["bone"] * rib + 0.06 * hila + field["texture"] * texture - field["air"]) * air
    for i, (chest, record_findings) in enumerate(zip(chests, findings)):
        if chest.gastric_bubble:
            bubble_x, bubble_y = chest.center + 0.55 * chest.half_width, chest.base_left + 0.045
            _add_disc(image[i], bubble_x, bubble_y, 0.035, -chest.gastric_bubble, edge)
        for f in record_findings:
            if f.kind in ("nodule", "mass"):
                _add_disc(image[i], f.x, f.y, f.extent, f.density, edge + 0.2 * f.extent)

    image *= field["gain"]
    image += field["offset"] + field["gradient"] * (x - 0.5)
    np.clip(image, 0, 1, out=image)
    image += field["curve"] * image * (1 - image)  # a monotone contrast curve, cheaper than a gamma
    image += field["noise"] * pixel_noise
    return np.clip(image, 0, 1, out=image)


def draw_radiographs(chests: list[Chest], findings: list[list[Finding]], image_size: int = 128) -> np.ndarray:
    """Render synthetic radiographs as an (N, image_size, image_size) uint8 array, in small chunks on all cores."""
    if len(chests) != len(findings):
        raise ValueError(f"findings: expected one list per chest ({len(chests)}); found {len(findings)}.")
    images = np.empty((len(chests), image_size, image_size), dtype=np.uint8)

    def draw(start: int) -> None:
        chunk = _draw_chunk(chests[start : start + _CHUNK], findings[start : start + _CHUNK], image_size)
        images[start : start + _CHUNK] = np.round(chunk * 255)

    # numpy releases the GIL inside its loops, so threads share the work; each chunk writes only its own slice.
    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8)) as pool:
        list(pool.map(draw, range(0, len(chests), _CHUNK)))
    return images


OPACITY_SENTENCES = (
    "There is a {size} {kind} in the {side} {zone} lobe.",
    "A {size} {kind} is seen in the {side} {zone} lung zone.",
    "{Size} {side} {zone} lobe {kind}.",
    "{Size} {kind} in the {side} {zone} lobe.",
    "{Size} {kind} projecting over the {side} {zone} lung.",
)
EFFUSION_SENTENCES = (
    "There is a {size} {side} pleural effusion.",
    "{Size} {side} pleural effusion with blunting of the costophrenic angle.",
    "A {size} {side} pleural effusion is present.",
    "Blunting of the {side} costophrenic angle from a {size} pleural effusion.",
)
CARDIOMEGALY_SENTENCES = (
    "The heart is {size}ly enlarged.",
    "{Size} cardiomegaly.",
    "There is {size} cardiomegaly.",
    "There is {size} enlargement of the cardiac silhouette.",
)
NORMAL_HEART_SENTENCES = (
    "The heart size is normal.",
    "Heart size is within normal limits.",
    "The cardiomediastinal silhouette is normal.",
    "The cardiac silhouette is not enlarged.",
)
NO_OPACITY_SENTENCES = (
    "No pulmonary nodule or mass is seen.",
    "There is no lung nodule or mass.",
    "No suspicious pulmonary nodule or mass.",
)
NEGATIVE_SENTENCES = ("No {items}.", "There is no {items}.")
CLEAR_LUNGS_SENTENCE = "The lungs are clear without {items}."
VIEW_SENTENCES = (
    "PA view of the chest.",
    "Frontal view of the chest.",
    "Single frontal view of the chest.",
    "PA radiograph of the chest.",
)
BONE_SENTENCES = (
    "Osseous structures are unremarkable.",
    "No acute osseous abnormality.",
    "The visualized osseous structures are intact.",
)
NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "No acute intrathoracic abnormality.",
    "Normal chest radiograph.",
)
IMPRESSION_PHRASES = {
    "nodule": ("Pulmonary nodule", "Pulmonary nodule, CT recommended"),
    "mass": ("Lung mass, concerning for malignancy", "Pulmonary mass"),
    "effusion": ("Pleural effusion",),
    "cardiomegaly": ("Cardiomegaly", "Enlarged heart"),
}
BILATERAL_IMPRESSION_PHRASES = {
    "nodule": "Bilateral pulmonary nodules",
    "mass": "Bilateral lung masses",
    "effusion": "Bilateral pleural effusions",
}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


def _fill(template: str, finding: Finding) -> str:
    size = finding.size
    return template.format(kind=finding.kind, size=size, Size=size.capitalize(), side=finding.side, zone=finding.zone)


def _join(items: list[str], rng: np.random.Generator) -> str:
    """'a', 'a or b', 'a, b, or c' (with or without the serial comma)."""
    if len(items) < 3:
        return " or ".join(items)
    return ", ".join(items[:-1]) + ("," if rng.random() < 0.5 else "") + " or " + items[-1]


def write_report(findings: list[Finding], rng: np.random.Generator) -> str:
    """A MIMIC-like FINDINGS / IMPRESSION report that states every finding and negates what is absent."""
    kinds = {f.kind for f in findings}
    has_opacity, has_effusion = bool(kinds & {"nodule", "mass"}), "effusion" in kinds

    templates = {
        "nodule": OPACITY_SENTENCES,
        "mass": OPACITY_SENTENCES,
        "effusion": EFFUSION_SENTENCES,
        "cardiomegaly": CARDIOMEGALY_SENTENCES,
    }
    lungs = [_fill(_pick(rng, templates[f.kind]), f) for f in findings if f.kind in ("nodule", "mass")]
    pleura = [_fill(_pick(rng, templates[f.kind]), f) for f in findings if f.kind == "effusion"]
    heart = [_fill(_pick(rng, templates[f.kind]), f) for f in findings if f.kind == "cardiomegaly"]
    rng.shuffle(lungs)
    rng.shuffle(pleura)
    if not has_opacity:
        lungs.append(_pick(rng, NO_OPACITY_SENTENCES))
    if not heart:
        heart.append(_pick(rng, NORMAL_HEART_SENTENCES))
    items = _join(["focal consolidation"] + ([] if has_effusion else ["pleural effusion"]) + ["pneumothorax"], rng)
    clear = not (has_opacity or has_effusion) and rng.random() < 0.4
    negatives = CLEAR_LUNGS_SENTENCE if clear else _pick(rng, NEGATIVE_SENTENCES)
    pleura.append(negatives.format(items=items))

    groups = [lungs, pleura, heart]
    order = rng.permutation(len(groups))
    body = [_pick(rng, VIEW_SENTENCES)] if rng.random() < 0.5 else []
    body += [sentence for index in order for sentence in groups[index]]
    if rng.random() < 0.4:
        body.append(_pick(rng, BONE_SENTENCES))

    phrases = []
    for kind in KINDS:
        count = sum(f.kind == kind for f in findings)
        if count:
            phrases.append(BILATERAL_IMPRESSION_PHRASES[kind] if count == 2 else _pick(rng, IMPRESSION_PHRASES[kind]))
    if not phrases:
        impression = _pick(rng, NORMAL_IMPRESSIONS)
    elif len(phrases) > 1 and rng.random() < 0.5:
        impression = " ".join(f"{number}. {phrase}." for number, phrase in enumerate(phrases, start=1))
    else:
        impression = " ".join(f"{phrase}." for phrase in phrases)
    return f"FINDINGS: {' '.join(body)}\n\nIMPRESSION: {impression}"


def demo_report_texts() -> list[str]:
    """Every sentence a demo report can hold, each blank filled with every value it takes: the demo reports' whole
    vocabulary, for `mrm_hf.tokenization_mrm.vocabulary_tokenizer`."""
    templates = {
        "nodule": OPACITY_SENTENCES,
        "mass": OPACITY_SENTENCES,
        "effusion": EFFUSION_SENTENCES,
        "cardiomegaly": CARDIOMEGALY_SENTENCES,
    }
    texts = ["FINDINGS: IMPRESSION:", " ".join(f"{number}." for number in range(1, len(KINDS) + 1))]
    for kind, sentences in templates.items():
        for size, side, zone, sentence in itertools.product(SIZES[kind], SIDES, ZONES, sentences):
            texts.append(_fill(sentence, Finding(kind, size, side, zone, (0.0, 0.0, 0.0, 0.0))))
    items = "focal consolidation, pleural effusion, or pneumothorax"
    texts += [sentence.format(items=items) for sentence in (*NEGATIVE_SENTENCES, CLEAR_LUNGS_SENTENCE)]
    texts += [*NO_OPACITY_SENTENCES, *NORMAL_HEART_SENTENCES, *VIEW_SENTENCES, *BONE_SENTENCES, *NORMAL_IMPRESSIONS]
    texts += [phrase for phrases in IMPRESSION_PHRASES.values() for phrase in phrases]
    texts += list(BILATERAL_IMPRESSION_PHRASES.values())
    return texts


def sample_record(seed: int, index: int) -> tuple[Chest, list[Finding], str]:
    """Record `index` of the demo set with this seed: its anatomy, findings and report."""
    rng = np.random.default_rng([seed, index])
    chest = sample_chest(rng)
    findings = sample_findings(rng, chest)
    return chest, findings, write_report(findings, rng)


def _labels(findings: list[Finding]) -> list[float]:
    kinds = {f.kind for f in findings}
    return [float(kind in kinds) for kind in KINDS]


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image; light compression, as these are small and made in bulk."""
    buffer = io.BytesIO()
    PILImage.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_demo_records(num_records: int = 1000, image_size: int = 128, seed: int = 0) -> Dataset:
    """Synthetic records: `image` (grayscale PIL), `report`, `findings` and multi-hot `labels` over `KINDS`."""
    if num_records < 0 or image_size < 16:
        raise ValueError(
            f"num_records and image_size: expected at least 0 and 16; found {num_records} and {image_size}."
        )
    records = [sample_record(seed, index) for index in range(num_records)]
    images = draw_radiographs([chest for chest, _, _ in records], [findings for _, findings, _ in records], image_size)
    columns = {
        "image": [{"bytes": _png(image), "path": None} for image in images],
        "report": [report for _, _, report in records],
        "findings": [[f.as_record() for f in findings] for _, findings, _ in records],
        "labels": [_labels(findings) for _, findings, _ in records],
    }
    licence = "MIT (synthetic, generated by mrm_hf.data.demo)"
    info = DatasetInfo(description=DEMO_DESCRIPTION, features=FEATURES, license=licence)
    return Dataset.from_dict(columns, features=FEATURES, info=info)


def make_demo_dataset_dict(
    num_train: int = 2000, num_validation: int = 200, image_size: int = 128, seed: int = 0
) -> DatasetDict:
    """`train` from `seed` and `validation` from `seed + 1`: independent synthetic records."""
    return DatasetDict(
        train=make_demo_records(num_train, image_size, seed),
        validation=make_demo_records(num_validation, image_size, seed + 1),
    )


__all__ = [
    "DEMO_DESCRIPTION",
    "KINDS",
    "SIDES",
    "SIZES",
    "ZONES",
    "Chest",
    "Finding",
    "demo_report_texts",
    "draw_radiographs",
    "make_demo_dataset_dict",
    "make_demo_records",
    "sample_chest",
    "sample_findings",
    "sample_record",
    "write_report",
]
