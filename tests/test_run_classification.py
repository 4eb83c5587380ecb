"""examples/run_classification.py: label-efficient fine-tuning on real chest X-rays."""

import csv
import json
import logging
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score
from transformers import get_scheduler, pipeline

from conftest import run_without_mrm_hf, shared_path, tiny_config
from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor
from mrm_hf.convert import main as convert_main
from mrm_hf.data import NIH_LABELS
from mrm_hf.data import MULTI_LABEL, SINGLE_LABEL, ClassificationCollator
from mrm_hf.training import ClassificationTrainer, layer_decay_parameter_groups
from published_reference import published_classifier, randomize_


import run_classification  # noqa: E402
from run_classification import (  # noqa: E402
    PUBLISHED_OPTIMIZATION,
    RECIPES,
    ModelArguments,
    freeze_for_linear_probe,
    load_model,
    model_card_fields,
    parse_arguments,
)


SIZE = 32  # tiny_config's image_size: the processor and the transforms follow the model


def save_tiny_mrm(folder, seed=0):
    """A tiny MRM pre-training checkpoint, the kind run_pretraining.py writes."""
    torch.manual_seed(seed)
    MRMForPreTraining(tiny_config()).save_pretrained(folder)
    return str(folder)


def trainer_flags(output_dir, steps=6, every=2, batch=16):
    return [
        "--output_dir", str(output_dir), "--max_steps", str(steps), "--eval_strategy", "steps", "--eval_steps",
        str(every), "--save_strategy", "steps", "--save_steps", str(every), "--logging_steps", str(every),
        "--per_device_train_batch_size", str(batch), "--per_device_eval_batch_size", "64", "--learning_rate", "0.05",
        "--warmup_steps", "1", "--seed", "0", "--use_cpu", "--disable_tqdm", "true",
    ]  # fmt: skip


def read_predictions(folder):
    with open(folder / "test_predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def assert_auc_matches_sklearn(results, rows, class_names, prefix="test"):
    """Per-class and mean AUC of the JSON equal sklearn's on the written predictions; None where one class only."""
    defined = []
    for name in class_names:
        labels = np.array([int(row[f"label_{name}"]) for row in rows])
        scores = sigmoid([float(row[f"logit_{name}"]) for row in rows])
        if labels.min() == labels.max():
            assert results[f"{prefix}_auc_{name}"] is None, name
            continue
        expected = roc_auc_score(labels, scores)
        assert results[f"{prefix}_auc_{name}"] == pytest.approx(expected, abs=1e-12), name
        defined.append(expected)
    assert results[f"{prefix}_mean_auc"] == pytest.approx(np.mean(defined), abs=1e-12)
    return defined


# ---- NIH 64 px, 14 labels, from a tiny pre-training checkpoint -------------------------------------------------------


@pytest.fixture(scope="module")
def nih_run(tmp_path_factory):
    """Fine-tune a tiny MRM on the real NIH 64 px images for 6 steps, validating and saving every 2."""
    data = shared_path("data", "nih14")
    root = tmp_path_factory.mktemp("nih")
    val = str(data / "nih14_64px_val.csv")
    argv = [
        "--model_name_or_path", save_tiny_mrm(root / "tiny"), "--dataset", "csv",
        "--train_csv", str(data / "nih14_64px_train.csv"), "--validation_csv", val, "--test_csv", val,
        "--label_columns", ",".join(NIH_LABELS), *trainer_flags(root / "out"),
    ]  # fmt: skip
    results = run_classification.main(argv)
    return root / "out", results, data


def test_nih_test_auc_equals_sklearn_on_the_same_predictions_and_hernia_is_undefined(nih_run):
    out, results, data = nih_run
    saved = json.loads((out / "test_results.json").read_text())
    rows = read_predictions(out)
    with open(data / "nih14_64px_val.csv", newline="") as file:
        listed = list(csv.DictReader(file))
    assert [row["image_path"] for row in rows] == [row["image_path"] for row in listed]
    assert all(int(row[f"label_{n}"]) == int(src[n]) for row, src in zip(rows, listed) for n in NIH_LABELS)

    defined = assert_auc_matches_sklearn(saved, rows, NIH_LABELS)
    assert saved["test_auc_Hernia"] is None and len(defined) == 13  # no Hernia positive in this set
    assert saved["test_samples"] == 94
    everything = json.loads((out / "all_results.json").read_text())
    assert everything["test_mean_auc"] == saved["test_mean_auc"] == results["test_mean_auc"]
    assert everything["train_samples"] == 725 and everything["eval_samples"] == 94

    # The written logits are the saved (best) model's on the evaluation view of these images.
    model = MRMForImageClassification.from_pretrained(out).eval()
    processor = MRMImageProcessor.from_pretrained(out)
    images = [Image.open(data / row["image_path"]) for row in rows[:8]]
    with torch.no_grad():
        logits = model(**processor(images, return_tensors="pt")).logits
    written = torch.tensor([[float(row[f"logit_{n}"]) for n in NIH_LABELS] for row in rows[:8]])
    torch.testing.assert_close(logits, written, rtol=1e-5, atol=1e-6)


def test_best_checkpoint_is_the_one_with_the_best_validation_mean_auc(nih_run):
    out, results, _ = nih_run
    state = json.loads((out / "trainer_state.json").read_text())
    evaluations = [(log["step"], log["eval_mean_auc"]) for log in state["log_history"] if "eval_mean_auc" in log]
    assert [step for step, _ in evaluations] == [2, 4, 6]
    best_step, best_auc = max(evaluations, key=lambda item: item[1])
    assert state["best_metric"] == best_auc and state["best_global_step"] == best_step
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    # The final model is the best checkpoint's, and re-validating it gives that checkpoint's mean AUC.
    final, best = load_file(out / "model.safetensors"), load_file(out / f"checkpoint-{best_step}" / "model.safetensors")
    assert final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in final)
    assert results["eval_mean_auc"] == pytest.approx(best_auc, abs=1e-12)


def test_saved_classifier_carries_its_processor_code_and_multi_label_config(nih_run):
    out, _, _ = nih_run
    processor_config = json.loads((out / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_mrm.MRMImageProcessor"}
    assert processor_config["size"] == {"shortest_edge": SIZE} and processor_config["mode"] == "evaluation"
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == MULTI_LABEL and config["drop_path_rate"] == 0.1
    assert [config["id2label"][str(i)] for i in range(14)] == list(NIH_LABELS)
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_mrm.MRMForImageClassification"
    for name in ("modeling_mrm.py", "configuration_mrm.py", "image_processing_mrm.py"):
        assert (out / name).is_file(), name


def test_pipeline_gives_every_label_its_sigmoid_score(nih_run):
    out, _, data = nih_run
    path = str(data / "images_64px" / "00000245_000.png")
    classifier = pipeline("image-classification", model=str(out))
    scores = {item["label"]: item["score"] for item in classifier(path, top_k=len(NIH_LABELS))}
    assert sorted(scores) == sorted(NIH_LABELS)
    assert len(classifier(path)) == 5  # the pipeline's default top_k

    model = MRMForImageClassification.from_pretrained(out).eval()
    processor = MRMImageProcessor.from_pretrained(out)
    with torch.no_grad():
        expected = torch.sigmoid(model(**processor(Image.open(path).convert("RGB"), return_tensors="pt")).logits)[0]
    assert [scores[name] for name in NIH_LABELS] == pytest.approx(expected.tolist(), abs=1e-6)
    assert max(scores.values()) < 1.0 and abs(sum(scores.values()) - 1.0) > 0.5  # sigmoids, not a softmax


def test_fine_tuned_folder_runs_in_a_pipeline_without_mrm_hf(nih_run, tmp_path):
    out, _, data = nih_run
    path = str(data / "images_64px" / "00000245_000.png")
    expected = pipeline("image-classification", model=str(out))(path, top_k=len(NIH_LABELS))
    code = f"""
import json
from transformers import pipeline
classifier = pipeline("image-classification", model={str(out)!r}, trust_remote_code=True)
scores = classifier({path!r}, top_k={len(NIH_LABELS)})
classes = {{"model": type(classifier.model).__module__, "processor": type(classifier.image_processor).__module__}}
print(json.dumps({{"scores": scores, **classes}}))
"""
    found = json.loads(run_without_mrm_hf(code, tmp_path).strip().splitlines()[-1])
    assert found["model"].startswith("transformers_modules") and found["processor"].startswith("transformers_modules")
    scores = {item["label"]: item["score"] for item in found["scores"]}
    assert scores == pytest.approx({item["label"]: item["score"] for item in expected}, abs=1e-6)


def test_model_card_has_hub_metadata_and_the_test_auc(nih_run):
    out, results, _ = nih_run
    card = (out / "README.md").read_text()
    metadata = card.split("---")[1]
    assert "pipeline_tag: image-classification" in metadata and "license: mit" in metadata
    assert "base_model" not in metadata  # a local folder is no Hub id
    assert f"| mean AUC | {round(results['test_mean_auc'], 4)} |" in card
    assert "| AUC Hernia | undefined |" in card
    assert f"| AUC Atelectasis | {round(results['test_auc_Atelectasis'], 4)} |" in card
    # The model-index holds the test results; no dataset page is linked that the Hub does not have.
    from huggingface_hub import ModelCard

    data = ModelCard.load(out / "README.md").data
    assert data.datasets is None and "http" not in card.replace("https://arxiv.org/abs/2301.13155", "")
    index = {result.metric_name: result for result in data.eval_results}
    assert index["mean AUC"].metric_value == pytest.approx(results["test_mean_auc"])
    assert index["mean AUC"].dataset_split == "test" and index["mean AUC"].metric_type == "roc_auc"
    assert "AUC Hernia" not in index and index["AUC Atelectasis"].metric_value == results["test_auc_Atelectasis"]


def test_fine_tuned_folder_carries_the_processor_when_the_source_has_a_tokenizer(tmp_path):
    from mrm_hf import MRMProcessor
    from run_classification import processing_class_for
    from mrm_hf.tokenization_mrm import train_report_tokenizer

    model = MRMForImageClassification(tiny_config(num_labels=2))
    image_processor = MRMImageProcessor()
    assert processing_class_for(model, save_tiny_mrm(tmp_path / "bare"), image_processor) is image_processor
    train_report_tokenizer(["no pleural effusion"] * 3, vocab_size=40).save_pretrained(tmp_path / "bare")
    processor = processing_class_for(model, str(tmp_path / "bare"), image_processor)
    assert isinstance(processor, MRMProcessor) and processor.image_processor is image_processor
    assert processor.reconstruction_size is None  # a classifier takes images only


def test_model_card_names_a_hub_base_model_but_not_a_local_folder(tmp_path):
    model = MRMForImageClassification(tiny_config(num_labels=2))
    for source, expected in (("org/mrm-base", "org/mrm-base"), (str(tmp_path), None)):
        model_args, data_args, training_args = parse_arguments(
            ["--model_name_or_path", source, "--dataset", "csv", "--train_csv", "t", "--output_dir", str(tmp_path)]
        )
        fields = model_card_fields(model, model_args, data_args, training_args, 10)
        assert fields["base_model"] == expected and fields["pipeline_tag"] == "image-classification"


# ---- COVID split 1: one binary output (BCE), linear probe -----------------------------------------------------------


def test_covid_linear_probe_trains_only_the_head_of_one_binary_output(tmp_path):
    data = shared_path("data", "covid")
    model_dir = save_tiny_mrm(tmp_path / "tiny", seed=1)
    val = str(data / "covid1_val.csv")
    argv = [
        "--model_name_or_path", model_dir, "--dataset", "csv", "--train_csv", str(data / "covid1_train.csv"),
        "--validation_csv", val, "--test_csv", val, "--label_columns", "label", "--linear_probe",
        *trainer_flags(tmp_path / "out", steps=4, batch=8),
    ]  # fmt: skip
    results = run_classification.main(argv)
    out = tmp_path / "out"
    tuned = MRMForImageClassification.from_pretrained(out)
    assert tuned.config.num_labels == 1 and tuned.config.problem_type == MULTI_LABEL
    assert tuned.config.id2label == {0: "label"} and tuned.config.drop_path_rate == 0.0

    rows = read_predictions(out)
    assert len(rows) == 46
    assert_auc_matches_sklearn(json.loads((out / "test_results.json").read_text()), rows, ["label"])
    assert results["test_mean_auc"] == results["test_auc_label"]

    source = load_file(f"{model_dir}/model.safetensors")
    final = tuned.state_dict()
    encoder = [k for k in final if k.startswith("image_encoder.") and not k.startswith("image_encoder.pooler.")]
    assert encoder and all(torch.equal(final[k], source[k]) for k in encoder)  # frozen
    assert torch.equal(final["image_encoder.pooler.layernorm.weight"], torch.ones(32))  # frozen at its fresh init
    assert final["classifier.weight"].abs().max() > 1e-3  # trained away from the trunc-normal(2e-5) init


# ---- the published NIH split lists, on a fake image tree ------------------------------------------------------------


def write_pngs(folder, names, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8)).save(folder / name)


def test_nih_published_split_counts_missing_images_and_survives_a_single_class_test_split(tmp_path, caplog):
    lists = shared_path("reference", "DatasetsSplits", "NIH_ChestX-ray")
    read = {name: [line.split() for line in (lists / name).read_text().splitlines() if line.strip()]
            for name in ("train_1.txt", "val_list.txt", "test_list.txt")}
    train = [fields[0] for fields in read["train_1.txt"][:24]]
    positive_val = [f[0] for f in read["val_list.txt"] if "1" in f[1:]][:6]
    negative_val = [f[0] for f in read["val_list.txt"] if "1" not in f[1:]][:6]
    negative_test = [f[0] for f in read["test_list.txt"] if "1" not in f[1:]][:8]  # every class one-valued
    write_pngs(tmp_path / "images" / "images_001" / "images", train + positive_val + negative_val + negative_test)
    argv = ["--model_name_or_path", save_tiny_mrm(tmp_path / "tiny"), "--dataset", "nih",
            "--data_dir", str(tmp_path / "images"), "--split_dir", str(lists.parent), "--label_fraction", "1",
            *trainer_flags(tmp_path / "out", steps=2, every=2, batch=8)]  # fmt: skip

    with pytest.raises(FileNotFoundError, match=r"761 of 785 images named in .*train_1\.txt are not under"):
        run_classification.main([*argv, "--strict"])

    with pytest.warns(UserWarning) as record, caplog.at_level(logging.WARNING, logger="run_classification"):
        run_classification.main(argv)
    messages = [str(warning.message) for warning in record]
    for count, total, name in ((761, 785, "train_1.txt"), (11207, 11219, "val_list.txt"),
                               (22425, 22433, "test_list.txt")):
        assert any(f"{count} of {total} images named in" in m and name in m for m in messages), (name, messages)
    saved = json.loads((tmp_path / "out" / "test_results.json").read_text())
    assert saved["test_mean_auc"] is None and all(saved[f"test_auc_{n}"] is None for n in NIH_LABELS)
    assert json.loads((tmp_path / "out" / "all_results.json").read_text())["train_samples"] == 24
    assert any("undefined (None)" in r.getMessage() and "so is the mean AUC" in r.getMessage() for r in caplog.records)
    assert "| mean AUC | undefined |" in (tmp_path / "out" / "README.md").read_text()


# ---- imagefolder: single-label, softmax ------------------------------------------------------------------------------


def test_imagefolder_is_single_label_with_softmax_scores(tmp_path):
    for split, count in (("train", 8), ("validation", 4), ("test", 4)):
        for index, name in enumerate(("normal", "pneumonia")):
            write_pngs(tmp_path / "folder" / split / name, [f"{name}_{i}.png" for i in range(count)], seed=index)
    argv = ["--model_name_or_path", save_tiny_mrm(tmp_path / "tiny"), "--dataset", "imagefolder",
            "--data_dir", str(tmp_path / "folder"), *trainer_flags(tmp_path / "out", steps=2, every=2, batch=8)]
    results = run_classification.main(argv)
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == SINGLE_LABEL and config["id2label"] == {"0": "normal", "1": "pneumonia"}
    rows = read_predictions(out)
    labels = np.array([int(row["label"]) for row in rows])
    logits = np.array([[float(row["logit_normal"]), float(row["logit_pneumonia"])] for row in rows])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert results["test_auc_pneumonia"] == pytest.approx(roc_auc_score(labels, probabilities[:, 1]), abs=1e-12)
    assert rows[0]["image_path"].endswith(".png") and (tmp_path / "folder").as_posix() in rows[0]["image_path"]

    scores = pipeline("image-classification", model=str(out))(rows[0]["image_path"], top_k=2)
    assert sum(item["score"] for item in scores) == pytest.approx(1.0, abs=1e-6)


# ---- bad input -------------------------------------------------------------------------------------------------------


def test_label_columns_that_do_not_exist_stop_the_script_naming_them(tmp_path):
    data = shared_path("data", "nih14")
    argv = ["--model_name_or_path", "unused", "--dataset", "csv", "--train_csv", str(data / "nih14_64px_train.csv"),
            "--label_columns", "Atelectasis,Pneumonitis", "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match=r"without \['Pneumonitis'\]"):
        run_classification.main(argv)
    with pytest.raises(ValueError, match="--dataset nih: expected --data_dir and --split_dir; found none of them"):
        run_classification.main(["--model_name_or_path", "unused", "--dataset", "nih", "--output_dir", str(tmp_path)])


def convert_published_classifier(tmp_path, num_classes, names):
    """A random published-layout (timm) classifier, saved as .pth and converted with `python -m mrm_hf.convert`."""
    reference = published_classifier(num_classes=num_classes, img_size=SIZE, patch_size=8, embed_dim=32, depth=2,
                                     num_heads=4)
    randomize_(reference, seed=3).eval()
    torch.save({"model": reference.state_dict()}, tmp_path / "finetuned.pth")
    (tmp_path / "tiny.json").write_text(json.dumps(tiny_config().to_dict()))
    folder = tmp_path / "converted"
    assert convert_main(["--checkpoint", str(tmp_path / "finetuned.pth"), "--output-dir", str(folder),
                         "--config", str(tmp_path / "tiny.json"), "--label-names", ",".join(names)]) == 0
    return reference, folder


def test_a_classifier_head_of_another_size_is_replaced_and_said_so(tmp_path, caplog):
    _, folder = convert_published_classifier(tmp_path, 2, ["COVID-19", "other"])
    source = MRMForImageClassification.from_pretrained(folder).state_dict()

    with caplog.at_level(logging.WARNING, logger="run_classification"):
        model = load_model(ModelArguments(model_name_or_path=str(folder)), list(NIH_LABELS), MULTI_LABEL)
    assert "has a classifier head for 2 classes ['COVID-19', 'other']; the data has 14 classes" in caplog.text
    assert model.classifier.weight.shape == (14, 32) and model.classifier.weight.abs().max() < 1e-3  # std 2e-5
    kept = [k for k in source if not k.startswith("classifier.")]
    assert all(torch.equal(model.state_dict()[k], source[k]) for k in kept)
    assert model.config.problem_type == MULTI_LABEL and model.config.drop_path_rate == 0.1

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="run_classification"):
        model = load_model(ModelArguments(model_name_or_path=str(folder)), ["COVID-19", "viral"], SINGLE_LABEL)
    assert "its head outputs are kept, in order" in caplog.text
    assert torch.equal(model.classifier.weight, source["classifier.weight"])
    assert model.config.problem_type == SINGLE_LABEL and model.config.id2label == {0: "COVID-19", 1: "viral"}


def test_converted_published_classifier_gives_the_timm_scores_through_the_pipeline(tmp_path):
    names = list(NIH_LABELS[:3])
    reference, folder = convert_published_classifier(tmp_path, 3, names)
    crop = {"height": SIZE, "width": SIZE}
    processor = MRMImageProcessor(mode="evaluation", size={"shortest_edge": SIZE}, crop_size=crop)
    processor.save_pretrained(folder)
    image = Image.open(shared_path("data", "nih14", "images_64px", "00000245_000.png")).convert("RGB")

    scores = pipeline("image-classification", model=str(folder))(image, top_k=3)
    with torch.no_grad():
        expected = torch.sigmoid(reference(processor(image, return_tensors="pt").pixel_values))[0]
    found = {item["label"]: item["score"] for item in scores}
    assert [found[name] for name in names] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)


# ---- recipes and arguments -------------------------------------------------------------------------------------------


def published_table():
    """(task, percent) -> (lr, warm-up, steps) from the per-task table of MRM_NOTES §3.2."""
    text = shared_path("reference", "MRM_NOTES.md").read_text()
    rows = re.findall(r"^\| (NIH|RSNA|CheXpert|COVID) \| (\d+)% \| ([\d,]+) \| ([\d,]+) \| ([0-9.e-]+) \|$", text, re.M)
    return {(task.lower(), int(percent)): (float(lr), int(warmup.replace(",", "")), int(steps.replace(",", "")))
            for task, percent, warmup, steps, lr in rows}


def test_recipes_are_the_published_table():
    table = published_table()
    assert len(table) == 10
    assert {key: (r["learning_rate"], r["warmup_steps"], r["max_steps"]) for key, r in RECIPES.items()} == table
    for values in RECIPES.values():
        assert {k: values[k] for k in PUBLISHED_OPTIMIZATION} == {
            "optim": "sgd", "optim_args": "momentum=0.9", "weight_decay": 0.0, "lr_scheduler_type": "cosine",
            "max_grad_norm": 1.0, "per_device_train_batch_size": 96,
        }  # fmt: skip


def test_a_recipe_sets_defaults_and_explicit_arguments_win(tmp_path):
    base = ["--model_name_or_path", "m", "--dataset", "nih", "--data_dir", "d", "--split_dir", "s",
            "--output_dir", str(tmp_path)]
    _, data_args, args = parse_arguments([*base, "--recipe", "nih", "--label_fraction", "1"])
    assert data_args.label_fraction == 1
    schedule = (args.learning_rate, args.warmup_steps, args.max_steps, args.per_device_train_batch_size)
    assert schedule == (3e-2, 50, 3000, 96)

    _, _, args = parse_arguments([*base, "--recipe=chexpert", "--label_fraction=10", "--learning_rate", "0.1",
                                  "--max_steps=7", "--per_device_train_batch_size", "4"])
    assert (args.learning_rate, args.max_steps, args.per_device_train_batch_size) == (0.1, 7, 4)
    assert args.warmup_steps == 1500 and args.weight_decay == 0.0

    _, _, args = parse_arguments([*base, "--recipe", "rsna", "--label-fraction=1"])  # HfArgumentParser's dashed alias
    assert (args.learning_rate, args.warmup_steps, args.max_steps) == (3e-3, 50, 2000)

    _, _, args = parse_arguments(base)  # no recipe: the class defaults, still the published optimiser
    assert (args.learning_rate, args.max_steps, args.warmup_steps) == (3e-3, -1, 0)
    with pytest.raises(ValueError, match=r"--recipe covid --label_fraction 1: expected a published recipe, one of .*'covid 100%'.*; found no published recipe for covid with 1% of the labels"):
        parse_arguments([*base, "--recipe", "covid", "--label_fraction", "1"])


def test_recipe_arguments_give_sgd_with_momentum_and_the_published_warmup_cosine():
    _, _, args = parse_arguments(["--model_name_or_path", "m", "--dataset", "covid", "--data_dir", "d",
                                  "--split_dir", "s", "--recipe", "covid", "--output_dir", "unused"])
    optimizer_cls, kwargs = ClassificationTrainer.get_optimizer_cls_and_kwargs(args)
    assert optimizer_cls is torch.optim.SGD and kwargs == {"lr": 3e-2, "momentum": 0.9}
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = optimizer_cls([parameter], **kwargs)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.get_warmup_steps(args.max_steps), args.max_steps)
    rates = []
    for _ in range(args.max_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()

    def published(step, warmup=50, total=1000, lr=3e-2):  # the published WarmupCosineSchedule
        if step < warmup:
            return lr * step / warmup
        progress = (step - warmup) / (total - warmup)
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    assert rates == pytest.approx([published(step) for step in range(1000)], abs=1e-12)


def test_layer_decay_scales_each_depth_and_trainer_builds_the_optimizer_from_the_groups(tmp_path):
    model = MRMForImageClassification(tiny_config(num_labels=3))
    groups = layer_decay_parameter_groups(model, 1.0, 0.5)
    lr_of = {name: group["lr"] for group in groups for name, p in model.named_parameters()
             if any(p is q for q in group["params"])}
    assert sorted(lr_of) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert sum(len(group["params"]) for group in groups) == len(lr_of)
    for name, lr in lr_of.items():
        if name.startswith("image_encoder.embeddings."):
            assert lr == 0.5**3, name  # the position table is trainable here, and lowest
        elif name.startswith("image_encoder.layers.0."):
            assert lr == 0.5**2, name
        elif name.startswith("image_encoder.layers.1."):
            assert lr == 0.5, name
        else:
            assert lr == 1.0, name  # final norm, pooler, head
    assert "image_encoder.embeddings.position_embeddings" in lr_of and groups[0]["lr"] == 1.0

    argv = ["--model_name_or_path", "m", "--dataset", "csv", "--train_csv", "t", "--learning_rate", "0.2",
            "--output_dir", str(tmp_path), "--use_cpu", "--eval_strategy", "no", "--save_strategy", "no",
            "--load_best_model_at_end", "false"]
    _, _, args = parse_arguments(argv)
    trainer = ClassificationTrainer(model=model, args=args, layer_decay=0.5)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD) and {g["momentum"] for g in optimizer.param_groups} == {0.9}
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([0.2 * 0.5**3, 0.2 * 0.5**2, 0.1, 0.2])


def test_linear_probe_leaves_only_the_head_trainable_without_drop_path():
    model = MRMForImageClassification(tiny_config(num_labels=2))
    assert freeze_for_linear_probe(model) == ["classifier.weight", "classifier.bias"]
    assert ModelArguments(model_name_or_path="m", linear_probe=True).drop_path_rate == 0.0
    assert ModelArguments(model_name_or_path="m").drop_path_rate == 0.1
    with pytest.raises(ValueError, match="--layer_decay .* --linear_probe"):
        ModelArguments(model_name_or_path="m", linear_probe=True, layer_decay=0.75)


def test_collator_gives_float_multi_label_and_long_single_label_targets():
    examples = [{"pixel_values": torch.zeros(3, 4, 4), "labels": [0.0, 1.0]},
                {"pixel_values": torch.ones(3, 4, 4), "labels": [1.0, 1.0]}]
    batch = ClassificationCollator(MULTI_LABEL)(examples)
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    batch = ClassificationCollator(SINGLE_LABEL)([{"pixel_values": torch.zeros(3, 4, 4), "labels": 1}])
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1]
