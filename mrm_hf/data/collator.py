"""Batches of image-report records with whole-word masked reports, as MRM pre-trains on them.

Masking (whole words, as the published dataset's `_random_mask` does): each word (a token not starting with "##",
with the "##" pieces that follow it) is replaced by [MASK] with probability 0.5, all its pieces together, never with
80/10/10. The default rule never masks a special token and treats a "##" piece that follows one (or starts the
sequence) as a word of its own. With `published_masking=True` the published loop is reproduced exactly: positions
1 .. L-2 only (the last position is never masked), stopping at the first [PAD]; a "##" piece is masked iff the token
before it is [MASK] at that moment (so one right after [CLS] is never masked, and one after a literal [MASK] always
is); any other token, special or not, draws.

Labels: by default -100 on every unmasked position (the masked-token loss of the paper). `label_mode="all"` gives the
published labels: the original ids at every position, [CLS] and [PAD] included.

Both rules draw one uniform number per position and mask a word iff the number at its first token is below the
probability, so on the same draws they give the same mask wherever the published quirks do not apply.

Randomness: with `seed=None` (the default) masks are drawn from torch's global RNG (in a DataLoader worker, the
worker's own seeded one). With a `seed` (an int, or the `SeededDraws` the training transform shares) each report's
mask comes from a generator keyed by (seed, epoch, sample index) when the examples carry `sample_index`: new masks
every epoch, independent of batch composition, workers and processes, and the same after a resume mid-epoch. Examples
without it draw from one seeded stream per epoch, process and worker (see `mrm_hf.data.seeding`).

The other collators: image-only pre-training (`collate_images`, `ImageCollator`), classification
(`ClassificationCollator`) and segmentation (`collate_segmentation`).
"""

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

from ..utils import check_choice
from ..problem_types import MULTI_LABEL
from .seeding import SAMPLE_INDEX, SeededDraws


def token_lookups(tokenizer: PreTrainedTokenizerBase) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool tensors over the vocabulary: which ids are "##" continuation pieces, and which are special tokens."""
    vocab = tokenizer.get_vocab()
    is_continuation = torch.zeros(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
    is_continuation[[i for token, i in vocab.items() if token.startswith("##")]] = True
    is_special = torch.zeros_like(is_continuation)
    is_special[tokenizer.all_special_ids] = True
    return is_continuation, is_special


def whole_word_mask(
    input_ids: torch.Tensor,
    is_continuation: torch.Tensor,
    is_special: torch.Tensor,
    mask_token_id: int,
    pad_token_id: int,
    probability: float = 0.5,
    generator: torch.Generator | list[torch.Generator] | None = None,
    published: bool = False,
) -> torch.Tensor:
    """Which positions of (batch, length) ids to mask, as a bool tensor; lookups come from `token_lookups`.
    `generator` may be one generator per row."""
    ids = torch.as_tensor(input_ids)
    if ids.dim() != 2:
        raise ValueError(f"input_ids: expected the shape (batch, length); found {tuple(ids.shape)}.")
    if isinstance(generator, (list, tuple)):
        if len(generator) != ids.shape[0]:
            raise ValueError(f"generator: expected one per row of input_ids ({ids.shape[0]}); found {len(generator)}.")
        draws = torch.stack([torch.rand(ids.shape[1], generator=g) for g in generator]) < probability
    else:
        draws = torch.rand(ids.shape, generator=generator) < probability
    if published:
        return _published_mask(ids.tolist(), draws.tolist(), is_continuation, mask_token_id, pad_token_id)

    maskable = ~is_special[ids]
    follows_maskable = torch.nn.functional.pad(maskable[:, :-1], (1, 0), value=False)
    word_start = maskable & (~is_continuation[ids] | ~follows_maskable)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    start_of_word = torch.cummax(torch.where(word_start, positions, -1), dim=1).values
    chosen = (word_start & draws).gather(1, start_of_word.clamp(min=0))
    return maskable & chosen


def _published_mask(
    rows: list[list[int]],
    draws: list[list[bool]],
    is_continuation: torch.Tensor,
    mask_token_id: int,
    pad_token_id: int,
) -> torch.Tensor:
    """The published `_random_mask` loop, on the given draws."""
    continuation = is_continuation.tolist()
    mask = torch.zeros(len(rows), len(rows[0]) if rows else 0, dtype=torch.bool)
    for row, (ids, row_draws) in enumerate(zip(rows, draws)):
        current = list(ids)
        for i in range(1, len(ids) - 1):
            if ids[i] == pad_token_id:
                break
            if continuation[ids[i]]:
                hit = current[i - 1] == mask_token_id
            else:
                hit = row_draws[i]
            if hit:
                current[i] = mask_token_id
                mask[row, i] = True
    return mask


@dataclass
class DataCollatorForMRM:
    """Stack `pixel_values`; tokenize (`text`/`report`) or pad (`input_ids`), whole-word mask and label reports."""

    tokenizer: PreTrainedTokenizerBase
    mlm_probability: float = 0.5
    max_length: int = 100
    published_masking: bool = False
    label_mode: Literal["masked", "all"] = "masked"
    seed: "int | SeededDraws | None" = None
    return_tensors: str = "pt"
    draws: SeededDraws = field(default=None, init=False, repr=False)

    def __post_init__(self):
        check_choice("return_tensors", self.return_tensors, ["pt"])
        check_choice("label_mode", self.label_mode, ("masked", "all"))
        if not 0.0 <= self.mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability: expected a value in [0, 1]; found {self.mlm_probability}.")
        for name in ("mask_token_id", "pad_token_id"):
            if getattr(self.tokenizer, name) is None:
                raise ValueError(f"tokenizer: expected a `{name.removesuffix('_id')}` token; found none.")
        self._is_continuation, self._is_special = token_lookups(self.tokenizer)
        self.draws = self.seed if isinstance(self.seed, SeededDraws) else SeededDraws(self.seed)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's masks (and crops, when the transform shares these draws)."""
        self.draws.set_epoch(epoch)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        for position, example in enumerate(examples):
            if not isinstance(example, dict):
                raise TypeError(
                    f"DataCollatorForMRM: expected each example as a dict; found {type(example).__name__} at "
                    f"position {position} of the batch."
                )
        # An image the training transform skipped (unreadable; it logged which) leaves its example out.
        kept = [e for e in examples if not ("pixel_values" in e and e["pixel_values"] is None)]
        if not kept:
            raise ValueError(
                f"The batch: expected at least one readable image; found all {len(examples)} skipped as unreadable "
                "(see the warnings naming them)."
            )
        examples = kept
        input_ids, attention_mask = self._encode(examples)
        mask = whole_word_mask(
            input_ids,
            self._is_continuation,
            self._is_special,
            self.tokenizer.mask_token_id,
            self.tokenizer.pad_token_id,
            self.mlm_probability,
            self.draws.for_samples([e.get(SAMPLE_INDEX) for e in examples], "mask"),
            self.published_masking,
        )
        batch = {
            "input_ids": input_ids.masked_fill(mask, self.tokenizer.mask_token_id),
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "labels": input_ids if self.label_mode == "all" else input_ids.masked_fill(~mask, -100),
        }
        if "pixel_values" in examples[0]:
            for position, example in enumerate(examples):
                if "pixel_values" not in example:
                    raise ValueError(f"{_where(example, position)}: expected `pixel_values`, as the first example "
                                     "has; found none.")
            batch["pixel_values"] = torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples])
            finite = torch.isfinite(batch["pixel_values"]).flatten(1).all(1)
            if not finite.all():
                position = int((~finite).nonzero()[0])
                raise ValueError(
                    f"{_where(examples[position], position)}: expected finite `pixel_values`; found NaN or infinite "
                    "values."
                )
        if "decoded_images" in examples[0]:  # --augment_on_device: augmented later, on the device
            batch.update(collate_images(examples))
        return batch

    def _encode(self, examples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Report ids and attention mask, (batch, max_length), from `input_ids` or from `text`/`report` strings."""
        first = examples[0]
        if "input_ids" not in first:
            key = "text" if "text" in first else "report" if "report" in first else None
            if key is None:
                raise KeyError(
                    f"The example at position 0: expected `input_ids`, `text` or `report`; found the keys "
                    f"{sorted(first)}."
                )
            for position, example in enumerate(examples):
                if not isinstance(example.get(key), str):
                    raise TypeError(
                        f"{_where(example, position)}: expected `{key}` as a str; found "
                        f"{type(example.get(key)).__name__}."
                    )
            encoded = self.tokenizer(
                [e[key] for e in examples],
                padding="max_length",
                truncation=True,
                max_length=self.max_length,
                return_attention_mask=True,
                return_tensors="pt",
            )
            return encoded["input_ids"], encoded["attention_mask"]

        input_ids = torch.full((len(examples), self.max_length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, example in enumerate(examples):
            if example.get("input_ids") is None:
                raise ValueError(f"{_where(example, row)}: expected `input_ids`; found none.")
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long).flatten()[: self.max_length]
            given = example.get("attention_mask")
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = (
                1 if given is None else torch.as_tensor(given, dtype=torch.long).flatten()[: len(ids)]
            )
        outside = (input_ids < 0) | (input_ids >= len(self._is_continuation))
        if outside.any():
            row, column = (int(i) for i in outside.nonzero()[0])
            raise ValueError(
                f"{_where(examples[row], row)}, position {column}: expected `input_ids` in the tokenizer's vocabulary "
                f"(0 to {len(self._is_continuation) - 1}); found {int(input_ids[row, column])}."
            )
        return input_ids, attention_mask


def _where(example: dict, position: int) -> str:
    """Which example of a batch: its position, and its sample index when it carries one."""
    index = example.get(SAMPLE_INDEX)
    return f"The example at position {position} of the batch" + ("" if index is None else f" (sample {index})")


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    """The batch of image-only pre-training: the stacked `pixel_values` (or, under --augment_on_device, the decoded
    images, their sizes and sample indices), nothing of the reports."""
    keys = [key for key in ("pixel_values", "decoded_images", "original_sizes") if key in examples[0]]
    batch = {key: torch.stack([torch.as_tensor(example[key]) for example in examples]) for key in keys}
    if "decoded_images" in batch and all(SAMPLE_INDEX in example for example in examples):
        # `DeviceAugmentation` keys each sample's crop and flip by it, as the CPU path does, and removes it.
        batch[SAMPLE_INDEX] = torch.tensor([int(example[SAMPLE_INDEX]) for example in examples])
    return batch


class ImageCollator:
    """`collate_images` with the seeded draws' epoch (`set_epoch`), as `DataCollatorForMRM` has it."""

    def __init__(self, draws: SeededDraws):
        self.draws = draws

    def set_epoch(self, epoch: int) -> None:
        self.draws.set_epoch(epoch)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        # Unreadable images the transform skipped; --augment_on_device batches carry `decoded_images` instead.
        kept = [e for e in examples if not ("pixel_values" in e and e["pixel_values"] is None)]
        if not kept:
            raise ValueError(f"The batch: expected at least one readable image; found all {len(examples)} skipped.")
        return collate_images(kept)


@dataclass
class ClassificationCollator:
    """Stacks `pixel_values`; `labels` as float (multi-label, BCE) or long class ids (single-label)."""

    problem_type: str

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        dtype = torch.float32 if self.problem_type == MULTI_LABEL else torch.long
        return {
            "pixel_values": torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples]),
            "labels": torch.tensor([example["labels"] for example in examples], dtype=dtype),
        }


def collate_segmentation(examples: list[dict]) -> dict[str, torch.Tensor]:
    """`pixel_values` as float (batch, 3, H, W) and `labels` as uint8 (batch, H, W) class ids (compact for
    evaluation)."""
    return {
        "pixel_values": torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }


__all__ = [
    "ClassificationCollator",
    "DataCollatorForMRM",
    "ImageCollator",
    "collate_images",
    "collate_segmentation",
    "token_lookups",
    "whole_word_mask",
]
