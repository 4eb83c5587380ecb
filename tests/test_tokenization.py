import csv
import json

import pytest
import torch
from conftest import run_without_mrm_hf, shared_path
from tokenizers import Tokenizer
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from mrm_hf.data import report_text
from mrm_hf.tokenization_mrm import load_published_tokenizer, train_report_tokenizer


VOCAB = ("reference", "mimic_wordpiece.json")
MIMIC_STYLE = ("data", "reports", "mimic_cxr_style")
EDGE_CASES = [
    "",
    "   ",
    "Report with a literal [MASK] and [CLS] and [PAD] in it.",
    "lowercase look-alikes [cls] [mask] stay text",
    "Pneumothorax 12mm, 3.5 cm ___ Résumé naïve café",
    "word " * 150,
]


def published_reference(path) -> Tokenizer:
    """The published encoding: `tokenizers` on "[CLS] " + report, truncated and padded to 100."""
    reference = Tokenizer.from_file(str(path))
    reference.enable_truncation(max_length=100)
    reference.enable_padding(length=100)
    return reference


def real_reports(shared) -> list[str]:
    with open(shared("data", "reports", "iu_xray_openi", "iu_reports.csv"), newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    texts = [
        " ".join(f"{field.upper()}: {row[field]}" for field in ("indication", "comparison", "findings", "impression"))
        for row in rows
    ]
    texts += [row["findings"] for row in rows] + [row["impression"] for row in rows]
    website = shared(*MIMIC_STYLE, "mimic_cxr_website_example_report.txt").read_text()
    with open(shared(*MIMIC_STYLE, "mrm_readme_training_csv_example.txt"), newline="") as file:
        training_row = next(csv.DictReader(file))["report_content"]
    texts += [website, report_text(website, "full"), training_row]
    return texts


@pytest.fixture(scope="module")
def published():
    return load_published_tokenizer(shared_path(*VOCAB))


def test_published_ids_equal_tokenizers_on_cls_prefixed_reports(shared, published):
    texts = real_reports(shared) + EDGE_CASES
    reference = published_reference(shared(*VOCAB)).encode_batch(["[CLS] " + text for text in texts])
    ours = published(texts, padding="max_length", truncation=True, max_length=100)
    assert len(texts) > 3 * 3955
    assert sum(sum(e.attention_mask) == 100 for e in reference) > 500  # hundreds are truncated
    for text, expected, ids, mask, types in zip(
        texts, reference, ours["input_ids"], ours["attention_mask"], ours["token_type_ids"]
    ):
        assert ids == expected.ids, text
        assert mask == expected.attention_mask, text
        assert types == expected.type_ids == [0] * 100, text


def test_default_call_uses_model_max_length_and_right_padding(shared, published):
    text = shared(*MIMIC_STYLE, "mimic_cxr_website_example_report.txt").read_text() * 3
    expected = published_reference(shared(*VOCAB)).encode("[CLS] " + text)
    assert published.model_max_length == 100
    assert published(text, padding="max_length", truncation=True)["input_ids"] == expected.ids
    batch = published([text, "no acute process"], padding="max_length", truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 100)
    assert batch["input_ids"][1, :4].tolist() == [2, *published("no acute process")["input_ids"][1:]]
    assert batch["input_ids"][1, 4:].eq(0).all() and batch["attention_mask"][1].sum() == 4


def test_training_csv_example_fills_exactly_100_tokens_and_keeps_impression_at_93(shared, published):
    with open(shared(*MIMIC_STYLE, "mrm_readme_training_csv_example.txt"), newline="") as file:
        report = next(csv.DictReader(file))["report_content"]
    ids = published(report)["input_ids"]
    assert len(ids) == 100  # MRM_NOTES §1.2: exactly 100 tokens including [CLS]
    assert published.convert_ids_to_tokens(ids[93]) == "impression"


def test_special_tokens_match_the_published_vocabulary(published):
    ids = (published.pad_token_id, published.unk_token_id, published.cls_token_id, published.mask_token_id)
    assert ids == (0, 1, 2, 3)
    assert published.sep_token is None
    assert sorted(published.all_special_ids) == [0, 1, 2, 3]
    ids = published("a [MASK] b [cls]")["input_ids"]
    assert ids[0] == 2 and ids[2] == 3  # [CLS] added; a literal [MASK] is the mask token, as in the published code
    assert published.convert_ids_to_tokens(ids[4:]) == ["[", "cl", "##s", "]"]  # "[cls]" is ordinary text
    decoded = published.decode(published("Pleural effusions")["input_ids"], skip_special_tokens=True)
    assert decoded == "pleural effusions"


def test_published_tokenizer_works_with_transformers_mlm_collator(published):
    collator = DataCollatorForLanguageModeling(published, mlm_probability=0.5, seed=0)
    batch = collator([published("no focal consolidation"), published("large left pleural effusion is new")])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 7)
    assert (batch["labels"][:, 0] == -100).all()  # [CLS] is never a target


@pytest.fixture(scope="module")
def trained():
    with open(shared_path("data", "reports", "iu_xray_openi", "iu_reports.csv"), newline="", encoding="utf-8") as file:
        texts = [f"{row['findings']} {row['impression']}" for row in csv.DictReader(file)]
    return train_report_tokenizer(texts, vocab_size=3000)


def test_trained_tokenizer_has_the_published_structure(shared, trained, tmp_path):
    published_json = json.loads(shared(*VOCAB).read_text())
    trained.save_pretrained(tmp_path)
    trained_json = json.loads((tmp_path / "tokenizer.json").read_text())
    assert trained_json["normalizer"] == published_json["normalizer"]
    assert trained_json["pre_tokenizer"] == published_json["pre_tokenizer"]
    assert trained_json["added_tokens"] == published_json["added_tokens"]
    model = {k: v for k, v in trained_json["model"].items() if k != "vocab"}
    assert model == {k: v for k, v in published_json["model"].items() if k != "vocab"}
    assert trained.convert_ids_to_tokens([0, 1, 2, 3]) == ["[PAD]", "[UNK]", "[CLS]", "[MASK]"]
    assert len(trained) == 3000
    assert {"pneumothorax", "effusion", "##s"} <= set(trained.get_vocab())


def test_trained_tokenizer_equals_cls_prefixed_encoding_without_post_processor(trained, tmp_path):
    trained.backend_tokenizer.save(str(tmp_path / "raw.json"))
    raw = json.loads((tmp_path / "raw.json").read_text())
    raw["post_processor"] = None
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    reference = published_reference(tmp_path / "raw.json")
    texts = ["Heart size normal. [MASK] lungs are clear.", "x " * 120, ""]
    ours = trained(texts, padding="max_length", truncation=True)["input_ids"]
    assert ours == [e.ids for e in reference.encode_batch(["[CLS] " + t for t in texts])]


def test_save_pretrained_round_trips_through_auto_tokenizer(trained, tmp_path):
    trained.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # transformers 5 names PreTrainedTokenizerFast "TokenizersBackend": the same class, no custom code.
    assert tokenizer_class_from_name(config["tokenizer_class"]) is PreTrainedTokenizerFast
    assert "auto_map" not in config
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Stable cardiomegaly. No [MASK] effusion."
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert loaded(text, padding="max_length", truncation=True) == trained(text, padding="max_length", truncation=True)
    assert (loaded.mask_token_id, loaded.pad_token_id, loaded.cls_token_id, loaded.model_max_length) == (3, 0, 2, 100)


def test_saved_tokenizer_loads_where_mrm_hf_cannot_be_imported(shared, published, tmp_path):
    published.save_pretrained(tmp_path / "tok")
    text = shared(*MIMIC_STYLE, "mimic_cxr_website_example_report.txt").read_text()
    expected = published(text, padding="max_length", truncation=True)["input_ids"]
    code = f"""
import json
from transformers import AutoTokenizer
text = {text!r}
out = []
for trust in (False, True):
    tok = AutoTokenizer.from_pretrained("tok", trust_remote_code=trust)
    ids = tok(text, padding="max_length", truncation=True)["input_ids"]
    out.append([type(tok).__module__, tok.mask_token_id, ids])
print(json.dumps(out))
"""
    results = json.loads(run_without_mrm_hf(code, tmp_path).strip().splitlines()[-1])
    for module, mask_id, ids in results:
        assert module.startswith("transformers.")
        assert mask_id == 3
        assert ids == expected


def test_non_published_special_ids_are_rejected(shared, tmp_path):
    vocabulary = json.loads(shared(*VOCAB).read_text())
    vocabulary["model"]["vocab"].update({"[PAD]": 1, "[UNK]": 0})  # swapped, as in a BERT-style vocabulary
    (tmp_path / "swapped.json").write_text(json.dumps(vocabulary))
    with pytest.raises(ValueError, match=r"at ids 0, 1, 2, 3; found \[1, 0, 2, 3\]"):
        load_published_tokenizer(tmp_path / "swapped.json")


def test_tokenizer_tensors_are_long(published):
    batch = published(["a", "b c"], padding="max_length", truncation=True, return_tensors="pt")
    assert batch["input_ids"].dtype == torch.long and set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
