"""The pre-training scripts, end to end on tiny models and the built-in demo records (CPU)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForPreTraining, AutoProcessor, AutoTokenizer

from mrm_hf import MRMForPreTraining, MRMImageProcessor, MRMProcessor
from mrm_hf.training import decay_parameter_names


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
import run_pretraining  # noqa: E402
import run_pretraining_no_trainer  # noqa: E402
import pretraining_setup  # noqa: E402


TINY = [
    "--dataset", "demo",
    "--demo_num_records", "24",
    "--demo_num_validation", "8",
    "--demo_image_size", "64",
    "--config_overrides",
    "image_size=16,patch_size=4,reconstruction_size=32,hidden_size=32,num_hidden_layers=2,num_attention_heads=2,"
    "intermediate_size=64,decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,"
    "decoder_intermediate_size=64,report_hidden_size=32,report_num_hidden_layers=1,report_num_attention_heads=2,"
    "report_intermediate_size=64",
    "--tokenizer_vocab_size", "200",
    "--hflip_probability", "0",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "8",
    "--effective_batch_size", "8",
    "--base_learning_rate", "1e-2",
    "--max_steps", "6",
    "--warmup_epochs", "0",
    "--logging_steps", "1",
    "--save_strategy", "steps",
    "--save_steps", "3",
    "--eval_strategy", "no",
    "--use_cpu",
    "--report_to", "none",
    "--disable_tqdm", "true",
    "--num_figure_samples", "2",
    "--dataloader_num_workers", "0",
]  # fmt: skip
SCRIPTS = {"trainer": run_pretraining, "accelerate": run_pretraining_no_trainer}


def logged(script: str, output_dir: Path, capsys) -> list[dict]:
    """Every log of a run: Trainer's log history, or the dicts the Accelerate loop printed."""
    if script == "trainer":
        return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    printed = capsys.readouterr().out.splitlines()
    return [eval(line) for line in printed if line.startswith("{'")]  # noqa: S307 (our own printed dicts)


def train_log(script: str, output_dir: Path, capsys) -> list[dict]:
    """The per-step training logs of a run."""
    return [entry for entry in logged(script, output_dir, capsys) if "loss" in entry]


def figure_image() -> Image.Image:
    return Image.new("L", (40, 30), 128)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_pretrains_logs_both_losses_and_saves_a_loadable_folder(script, tmp_path, capsys):
    output_dir = tmp_path / "run"
    SCRIPTS[script].main([*TINY, "--output_dir", str(output_dir), "--eval_strategy", "steps", "--eval_steps", "3"])

    entries = logged(script, output_dir, capsys)
    logs = [entry for entry in entries if "loss" in entry]
    assert len(logs) == 6
    for entry in logs:
        assert {"loss", "image_loss", "report_loss"} <= set(entry)
        assert all(math.isfinite(entry[k]) for k in ("loss", "image_loss", "report_loss"))
        assert entry["image_loss"] != entry["report_loss"]

    model = AutoModelForPreTraining.from_pretrained(output_dir)
    assert isinstance(model, MRMForPreTraining) and model.config.reconstruction_size == 32
    # The saved processor is the encoder's evaluation view: what users of the folder feed to AutoModel.
    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert isinstance(processor, MRMImageProcessor) and processor.mode == "evaluation"
    pixel_values = processor(Image.new("L", (80, 64), 128), return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 3, 16, 16)
    assert model.image_encoder(pixel_values).last_hidden_state.shape == (1, 1 + 16, 32)
    # One processor for the record: the pre-training view derives from the encoder's at reconstruction_size.
    processor = AutoProcessor.from_pretrained(output_dir)
    assert isinstance(processor, MRMProcessor) and processor.reconstruction_size == 32
    inputs = processor(images=[figure_image(), figure_image()], text=["left effusion", "no [MASK]"], return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 32, 32) and model(**inputs).report_logits.shape[:2] == (2, 3)
    evaluations = [entry for entry in entries if "eval_loss" in entry]
    assert len(evaluations) >= 2
    for entry in evaluations:
        assert all(math.isfinite(entry[f"eval_report_loss_{name}_image"]) for name in ("own", "zero", "shuffled"))
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert len(tokenizer) == model.config.report_vocab_size and tokenizer("left effusion")["input_ids"][0] == 2

    figure = Image.open(output_dir / "reconstruction.png")
    assert figure.format == "PNG" and figure.width > 3 * 32 and figure.height > 2 * 32
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.license == "mit" and "synthetic-demo" in card.data.tags and "synthetic" in card.text


# Run a script and kill -9 it the moment it would give its step-6 checkpoint its final name: the newest complete
# checkpoint is then step 4, one step into the second epoch (3 steps per epoch).
KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {examples!r})
import {module} as script
replace = os.replace
def replace_or_die(source, destination):
    if os.path.basename(destination) == {dying!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, destination)
os.replace = replace_or_die
script.main(sys.argv[1:])
"""
MID_EPOCH = ["--max_steps", "8", "--save_steps", "2"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_run_killed_mid_epoch_resumes_bit_identical(script, tmp_path, capsys):
    straight = tmp_path / "straight"
    SCRIPTS[script].main([*TINY, *MID_EPOCH, "--output_dir", str(straight)])
    straight_logs = train_log(script, straight, capsys)

    resumed = tmp_path / "resumed"
    prefix = "checkpoint-" if script == "trainer" else "step_"
    code = KILLED_RUN.format(examples=str(EXAMPLES), module=SCRIPTS[script].__name__, dying=f"{prefix}6")
    killed_args = [*TINY, *MID_EPOCH, "--output_dir", str(resumed), "--dataloader_num_workers", "2"]
    # The straight run's vocabulary: tokenizers does not train the same one twice (huggingface/tokenizers#1794).
    killed = subprocess.run(
        [sys.executable, "-c", code, *killed_args, "--tokenizer_name", str(straight)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in resumed.glob(f"{prefix}*")) == [f"{prefix}2", f"{prefix}4"]  # 6 never appeared

    # The killed run had DataLoader workers, the others none: the draws depend on (seed, epoch, sample) only.
    optimizer_file = "optimizer.pt" if script == "trainer" else "optimizer.bin"
    assert torch.load(resumed / f"{prefix}4" / optimizer_file, weights_only=True)["state"], "AdamW's moments"
    args = [*TINY, *MID_EPOCH, "--output_dir", str(resumed), "--resume_from_checkpoint", "last"]
    SCRIPTS[script].main(args)
    resumed_logs = train_log(script, resumed, capsys)
    if script == "trainer":  # Trainer carries the checkpoint's log history over
        resumed_logs = resumed_logs[4:]
    # Same weights, optimizer state, schedule, data order, crops, masks and noise: the same losses and weights.
    assert [entry["epoch"] for entry in resumed_logs] == [e["epoch"] for e in straight_logs[4:]]
    assert resumed_logs == straight_logs[4:]
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_best_checkpoint_names_its_final_folder_and_evaluation_keeps_only_losses(tmp_path):
    # Checkpoints are written aside and renamed; the state saved in them must name the folder that stays.
    out = tmp_path / "out"
    run_pretraining.main([*TINY, "--eval_strategy", "steps", "--eval_steps", "3", "--metric_for_best_model",
                          "eval_loss", "--output_dir", str(out)])  # fmt: skip
    for checkpoint in sorted(out.glob("checkpoint-*")):
        best = json.loads((checkpoint / "trainer_state.json").read_text())["best_model_checkpoint"]
        assert best is not None and Path(best).is_dir() and ".partial" not in best, best
    # Evaluation gathers no logits: report logits of labelled tokens differ in length between processes.
    assert pretraining_setup.PretrainingArguments(output_dir=str(tmp_path)).prediction_loss_only


def test_published_recipe_is_the_default():
    from transformers import HfArgumentParser

    from mrm_hf.training import derive_schedule
    from pretraining_setup import DataArguments, ModelArguments, PretrainingArguments

    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    _, data_args, args = parser.parse_args_into_dataclasses(["--output_dir", "x", "--per_device_train_batch_size", "32"])
    derive_schedule(args, world_size=4)
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay) == (0.9, 0.95, 0.05)
    assert args.gradient_accumulation_steps == 2 and args.learning_rate == pytest.approx(1.5e-4)
    assert args.num_train_epochs == 200 and args.warmup_steps == pytest.approx(0.2) and args.lr_scheduler_type == "cosine"
    assert (data_args.crop_min_scale, data_args.hflip_probability, data_args.mlm_probability) == (0.2, 0.5, 0.5)



@pytest.mark.parametrize(
    "per_device, processes, derived",
    [(32, 1, (32, 1)), (32, 2, (16, 1)), (48, 4, (32, 2)), (64, 3, None), (5, 2, (4, 4))],
)
def test_effective_batch_is_kept_whatever_the_number_of_processes(per_device, processes, derived):
    from transformers import HfArgumentParser

    from mrm_hf.training import derive_schedule
    from pretraining_setup import DataArguments, ModelArguments, PretrainingArguments

    effective = 32 if per_device in (32, 5) else 256
    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    args = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--per_device_train_batch_size", str(per_device), "--effective_batch_size", str(effective)]
    )[2]
    if derived is None:
        with pytest.raises(ValueError, match=f"--effective_batch_size {effective} cannot be split over 3 processes"):
            derive_schedule(args, processes)
        return
    derive_schedule(args, processes)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == derived
    assert args.per_device_train_batch_size * processes * args.gradient_accumulation_steps == effective
    assert args.learning_rate == pytest.approx(args.base_learning_rate * effective / 256)


def test_weight_decay_spares_biases_norms_positions_and_tokens():
    from conftest import tiny_config

    model = MRMForPreTraining(tiny_config())
    decayed = set(decay_parameter_names(model))
    assert "image_encoder.layers.0.attention.qkv.weight" in decayed
    assert "report_branch.embeddings.word_embeddings.weight" in decayed
    for spared in (
        "image_encoder.layers.0.attention.qkv.bias",
        "image_encoder.layers.0.layernorm_before.weight",
        "image_encoder.embeddings.position_embeddings",
        "image_encoder.embeddings.cls_token",
        "image_decoder.mask_token",
    ):
        assert spared not in decayed
    # The published code decayed the tokens (timm 0.3.2 exempts only 1-D parameters and biases).
    assert "image_decoder.mask_token" in decay_parameter_names(model, decay_tokens=True)


def uploaded_files(upload_folder_call) -> set[str]:
    """The files `HfApi.upload_folder` would send for these arguments (its own filtering, without the network)."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS

    kwargs = upload_folder_call.kwargs
    folder = Path(kwargs["folder_path"])
    ignore = list(kwargs.get("ignore_patterns") or []) + DEFAULT_IGNORE_PATTERNS
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return set(filter_repo_objects(paths, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=ignore))


CODE_AND_WEIGHTS = {
    "config.json",
    "model.safetensors",
    "configuration_mrm.py",
    "modeling_mrm.py",
    "image_processing_mrm.py",
    "processing_mrm.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "reconstruction.png",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_push_to_hub_uploads_model_processor_tokenizer_code_and_card(script, tmp_path):
    output_dir = tmp_path / "mrm-tiny"
    from huggingface_hub import constants

    with (
        mock.patch.object(constants, "HF_HUB_OFFLINE", False),  # the start-up check sees a logged-in user online
        mock.patch.object(HfApi, "whoami", return_value={"name": "someone"}),
        mock.patch.object(HfApi, "create_repo", return_value=RepoUrl("https://huggingface.co/someone/mrm-tiny")) as create,
        mock.patch.object(HfApi, "upload_folder") as upload,
    ):
        SCRIPTS[script].main(
            [*TINY, "--output_dir", str(output_dir), "--push_to_hub", "--hub_model_id", "someone/mrm-tiny",
             "--save_strategy", "no", "--hub_strategy", "end"]
        )  # fmt: skip
    assert create.call_args.args[0] == "someone/mrm-tiny"
    assert upload.call_count == 1 and upload.call_args.kwargs["repo_id"] == "someone/mrm-tiny"
    expected = CODE_AND_WEIGHTS | ({"training_args.bin", "all_results.json", "trainer_state.json"} if script == "trainer" else set())
    assert uploaded_files(upload.call_args) == expected

    card = ModelCard.load(output_dir / "README.md")
    assert card.data.license == "mit" and card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.library_name == "transformers"
    assert {"mrm", "chest-x-ray", "medical-imaging", "synthetic-demo"} <= set(card.data.tags)
    assert "someone/mrm-tiny" in card.text and "report_loss" in card.text
    config = json.loads((output_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_mrm.MRMForPreTraining"
    processor = json.loads((output_dir / "processor_config.json").read_text())
    assert processor["auto_map"]["AutoProcessor"] == "processing_mrm.MRMProcessor"
    assert processor["image_processor"]["auto_map"]["AutoImageProcessor"] == "image_processing_mrm.MRMImageProcessor"


@pytest.mark.parametrize(
    "script", ["run_pretraining.py", "run_pretraining_no_trainer.py", "run_classification.py", "run_segmentation.py"]
)
def test_push_to_hub_offline_stops_at_start_with_one_line(script, tmp_path):
    # Nothing is loaded or trained first: the same command without --push_to_hub would need --dataset's data.
    command = [sys.executable, str(EXAMPLES / script), "--output_dir", str(tmp_path / "out"), "--push_to_hub"]
    if script == "run_classification.py":  # neither the model nor the data exist: they are never reached
        command += ["--model_name_or_path", "no-such-model", "--dataset", "imagefolder", "--data_dir", "no-such-folder"]
    if script == "run_segmentation.py":
        command += ["--model_name_or_path", "no-such-model", "--dataset", "csv", "--train_csv", "no-such.csv"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: --push_to_hub: expected the Hub; found offline mode on")
    assert not (tmp_path / "out").exists()


def test_push_to_hub_without_login_stops_at_start(tmp_path):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalTokenNotFoundError

    with (
        mock.patch.object(constants, "HF_HUB_OFFLINE", False),
        mock.patch.object(HfApi, "whoami", side_effect=LocalTokenNotFoundError("Token is required, but no token found.")),
        pytest.raises(SystemExit, match=r"expected a logged-in connection to the Hub; found it failing \(Token is required"),
    ):
        run_pretraining.main([*TINY, "--output_dir", str(tmp_path / "out"), "--push_to_hub"])
    assert not (tmp_path / "out").exists()


def launch(command: list[str], tmp_path: Path) -> str:
    """Run a launcher; return what all its processes printed."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


# Without accelerators, the processes use gloo only with --use_cpu (under torchrun too).
TWO_PROCESS_ARGS = [*TINY, "--max_steps", "2", "--save_strategy", "no", "--log_level", "info"]


ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]  # fmt: skip
# accelerate 1.x's --cpu launcher starts ONE process (several only through MPI): it trains, but alone. Two processes
# of each engine run in tests/test_multi_process.py; docs/multi-process.md's own CPU commands (accelerate with the
# Accelerate loop, torchrun with Trainer) run as written in tests/test_docs.py.
ACCELERATE_CPU = [*ACCELERATE, "--cpu", "--num_processes", "2"]


def test_accelerate_cpu_launcher_starts_one_process(tmp_path):
    output_dir = tmp_path / "run"
    script = EXAMPLES / "run_pretraining_no_trainer.py"
    command = [*ACCELERATE_CPU, str(script), *TWO_PROCESS_ARGS, "--output_dir", str(output_dir)]
    printed = launch(command, tmp_path)
    assert "Num processes: 1" in printed, printed[-3000:]
    assert printed.count("Training a 200-token WordPiece vocabulary") == 1, printed[-3000:]
    model = MRMForPreTraining.from_pretrained(output_dir)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert (output_dir / "reconstruction.png").is_file()


@pytest.mark.parametrize("name", ["accelerate_multi_node", "accelerate_deepspeed_zero2", "accelerate_fsdp"])
def test_documented_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(EXAMPLES / "configs" / f"{name}.yaml"))
    assert config.num_processes >= 8 and config.mixed_precision == "bf16"
    if name == "accelerate_fsdp":
        # The wrapped layer classes must be the model's own.
        from mrm_hf.modeling_mrm import MRMPreTrainedModel

        assert set(config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")) <= set(
            MRMPreTrainedModel._no_split_modules
        )


@pytest.mark.parametrize("script", SCRIPTS)
def test_both_losses_reach_the_tracker(script, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir = tmp_path / "run"
    SCRIPTS[script].main([*TINY, "--output_dir", str(output_dir), "--report_to", "tensorboard", "--save_strategy", "no"])
    runs = {path.parent for path in output_dir.rglob("events.out.tfevents.*")}
    tags = set()
    for run in runs:
        events = EventAccumulator(str(run))
        events.Reload()
        tags |= set(events.Tags()["scalars"])
    prefix = "train/" if script == "trainer" else ""
    assert {f"{prefix}image_loss", f"{prefix}report_loss", f"{prefix}loss"} <= tags, tags
