import csv
import pickle

import numpy as np
import pytest
import torch
from conftest import shared_path

from mrm_hf.data import DataCollatorForMRM, token_lookups, whole_word_mask
from mrm_hf.tokenization_mrm import load_published_tokenizer


PAD, UNK, CLS, MASK = 0, 1, 2, 3


@pytest.fixture(scope="module")
def tokenizer():
    return load_published_tokenizer(shared_path("reference", "mimic_wordpiece.json"))


@pytest.fixture(scope="module")
def reports():
    path = shared_path("data", "reports", "iu_xray_openi", "iu_reports.csv")
    with open(path, newline="", encoding="utf-8") as file:
        return [
            f"INDICATION: {r['indication']} FINDINGS: {r['findings']} IMPRESSION: {r['impression']}"
            for r in csv.DictReader(file)
        ]


def words_of(tokens: list[str]) -> list[list[int]]:
    """Positions of each word: a non-"##" token (or a "##" after a special token) and the "##" pieces after it."""
    words, special = [], {"[PAD]", "[UNK]", "[CLS]", "[MASK]"}
    for i, token in enumerate(tokens):
        if token in special:
            continue
        if token.startswith("##") and words and words[-1][-1] == i - 1:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def collate(tokenizer, texts, **options):
    return DataCollatorForMRM(tokenizer, **options)([{"text": t} for t in texts])


def test_masks_half_of_the_words_of_real_reports_and_never_splits_one(tokenizer, reports):
    batch = collate(tokenizer, reports, seed=0)
    original = tokenizer(reports, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    masked = batch["labels"] != -100
    assert not masked[:, 0].any() and not masked[original == PAD].any()  # [CLS] and [PAD] never masked
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    words = masked_words = pieces = 0
    for row, (ids, states) in enumerate(zip(original.tolist(), masked.tolist())):
        for word in words_of([vocabulary[i] for i in ids]):
            assert len({states[i] for i in word}) == 1, (reports[row], word)  # all pieces of a word, or none
            words += 1
            masked_words += states[word[0]]
            pieces += len(word) > 1
    assert words > 200_000 and pieces > 2_000
    assert abs(masked_words / words - 0.5) < 0.02


def test_labels_are_minus_100_exactly_where_nothing_was_masked(tokenizer, reports):
    batch = collate(tokenizer, reports[:500], seed=1)
    original = tokenizer(reports[:500], padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    masked = batch["input_ids"] == MASK
    assert torch.equal(batch["labels"], torch.where(masked, original, torch.full_like(original, -100)))
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert torch.equal(batch["attention_mask"], (original != PAD).long())
    assert torch.equal(batch["token_type_ids"], torch.zeros_like(original))
    assert batch["input_ids"].shape == (500, 100) and batch["input_ids"].dtype == torch.long


def test_published_labels_are_the_original_ids_everywhere(tokenizer, reports):
    default = collate(tokenizer, reports[:300], seed=2)
    published = collate(tokenizer, reports[:300], seed=2, label_mode="all")
    original = tokenizer(reports[:300], padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    assert torch.equal(published["labels"], original)  # [CLS] and [PAD] included, no -100
    assert torch.equal(published["input_ids"], default["input_ids"])  # same seed, same masks


def published_reference_loop(ids, uniforms, idx_to_token, probability=0.5):
    """The published `_random_mask`, transcribed (MRM_NOTES §1.2), with its `random.random()` draws given."""
    masked = list(ids)
    for i in range(1, len(masked) - 1):
        if masked[i] == 0:
            break
        if masked[i - 1] == 3 and idx_to_token[masked[i]][0:2] == "##":
            masked[i] = 3
            continue
        if masked[i - 1] != 3 and idx_to_token[masked[i]][0:2] == "##":
            continue
        if uniforms[i] < probability:
            masked[i] = 3
    return masked


def test_published_masking_reproduces_the_published_loop(tokenizer, reports):
    vocab_tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ids = tokenizer(reports[:400] + ["##s right after cls, then [MASK] ##s and [UNK] ##ing"], padding="max_length",
                    truncation=True, return_tensors="pt")["input_ids"]
    ids[0, 50:] = PAD
    ids[0, 60:70] = ids[1, 60:70]  # tokens after a PAD: the published loop has stopped
    collator = DataCollatorForMRM(tokenizer, seed=3, published_masking=True, label_mode="all")
    state = collator.draws.stream("mask").get_state()
    batch = collator([{"input_ids": row} for row in ids])
    uniforms = torch.rand(ids.shape, generator=torch.Generator().set_state(state))
    for row in range(len(ids)):
        expected = published_reference_loop(ids[row].tolist(), uniforms[row].tolist(), vocab_tokens)
        assert batch["input_ids"][row].tolist() == expected, row


def test_published_quirks(tokenizer):
    tokens = ["[CLS]", "##s", "large", "effusion", "##s", "[MASK]", "##s", "and", "[UNK]", "##ing", "left", "right"]
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(tokens)])
    args = (*token_lookups(tokenizer), MASK, PAD, 1.0)  # probability 1: every candidate is masked

    published = whole_word_mask(ids, *args, published=True)[0].tolist()
    assert published[:2] == [False, False]  # [CLS]; a "##" right after [CLS] is never masked
    assert published[11] is False  # nor is the last position
    assert published[5:7] == [True, True]  # a literal [MASK] draws, and the "##" after it follows
    assert published[8] is True  # [UNK] in the text draws like any word start
    assert all(published[2:11])

    default = whole_word_mask(ids, *args)[0].tolist()
    assert [default[i] for i in (0, 5, 8)] == [False] * 3  # special tokens, never
    assert [default[i] for i in (1, 6, 9)] == [True] * 3  # a "##" after a special token is a word of its own
    assert default[11] is True  # the last position is an ordinary one
    assert sum(default) == 9

    padded = ids.clone()
    padded[0, 4] = PAD
    assert not any(whole_word_mask(padded, *args, published=True)[0, 4:])  # the loop stops at the first PAD


def test_published_and_default_rules_agree_away_from_the_quirks(tokenizer, reports):
    ids = tokenizer(reports, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    is_continuation, is_special = token_lookups(tokenizer)
    special_in_text = (is_special[ids] & (ids != PAD))[:, 1:].any(1)
    plain = (ids[:, 99] == PAD) & ~is_continuation[ids[:, 1]] & ~special_in_text  # no quirk applies
    args = (is_continuation, is_special, MASK, PAD, 0.5)
    published = whole_word_mask(ids[plain], *args, torch.Generator().manual_seed(4), published=True)
    default = whole_word_mask(ids[plain], *args, torch.Generator().manual_seed(4))
    assert plain.sum() > 3000
    assert torch.equal(published, default)


def test_same_seed_same_masks_for_the_same_batch_sequence(tokenizer, reports):
    examples = [{"text": t} for t in reports[:64]]
    first, second, other = (DataCollatorForMRM(tokenizer, seed=s) for s in (5, 5, 6))
    runs = [[c(examples)["input_ids"] for _ in range(3)] for c in (first, second, other)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not torch.equal(runs[0][0], runs[2][0])
    assert not torch.equal(runs[0][0], runs[0][1])  # the generator moves on between batches


class _SameReport(torch.utils.data.Dataset):
    def __init__(self, text):
        self.text = text

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return {"text": self.text, "pixel_values": np.zeros((3, 4, 4), dtype=np.float32)}


def test_dataloader_workers_draw_different_reproducible_masks(tokenizer, reports):
    collator = DataCollatorForMRM(tokenizer, seed=7)

    def epochs():
        loader = torch.utils.data.DataLoader(
            _SameReport(reports[0]), batch_size=4, num_workers=2, collate_fn=collator,
            generator=torch.Generator().manual_seed(0),
        )
        return [[batch["input_ids"] for batch in loader] for _ in range(2)]

    first, again = epochs(), epochs()
    assert all(torch.equal(a, b) for epoch, same in zip(first, again) for a, b in zip(epoch, same))
    assert not torch.equal(first[0][0], first[0][1])  # worker 0 and worker 1, same examples
    assert not torch.equal(first[0][0], first[1][0])  # a new epoch, new masks
    assert first[0][0].shape == (4, 100)


def test_pixel_values_are_stacked_and_input_ids_padded_or_truncated(tokenizer):
    examples = [
        {"pixel_values": np.ones((3, 8, 8), dtype=np.float32), "input_ids": [CLS] + [500] * 150},
        {"pixel_values": torch.zeros(3, 8, 8), "input_ids": torch.tensor([CLS, 500, 501])},
    ]
    batch = DataCollatorForMRM(tokenizer, seed=0, label_mode="all")(examples)
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_values"][0].eq(1).all() and batch["pixel_values"][1].eq(0).all()
    assert batch["labels"][0].tolist() == [CLS] + [500] * 99
    assert batch["labels"][1].tolist() == [CLS, 500, 501] + [PAD] * 97
    assert batch["attention_mask"].sum(1).tolist() == [100, 3]


def test_report_key_matches_text_key_and_collator_pickles(tokenizer, reports):
    by_text = DataCollatorForMRM(tokenizer, seed=9)([{"text": t} for t in reports[:8]])
    collator = DataCollatorForMRM(tokenizer, seed=9)
    by_report = collator([{"report": t} for t in reports[:8]])
    assert all(torch.equal(by_text[k], by_report[k]) for k in by_text)
    restored = pickle.loads(pickle.dumps(collator))
    assert restored([{"report": reports[0]}])["input_ids"].shape == (1, 100)


def test_examples_without_report_are_rejected(tokenizer):
    with pytest.raises(KeyError, match="input_ids`, `text` or `report`"):
        DataCollatorForMRM(tokenizer)([{"pixel_values": torch.zeros(3, 2, 2)}])
