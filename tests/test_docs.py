"""Every command and code snippet of the README, the pages of docs/, the model cards and the scripts' docstrings is
run: here at tiny sizes, or by `.ci/run` (the Quick start, as written). Commands that need GPUs or credentialed data
are parsed by the launcher and the script that would read them, so that no documented argument can go stale.

A command added to a document fails `test_every_documented_command_is_run_or_checked` until it is covered here.
"""

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT
from published_reference import PublishedMRM, published_classifier, randomize_


README = REPO_ROOT / "README.md"
# The README and the reference pages it links: their bash blocks are run or checked here, their Python blocks by
# tests/test_fresh_install.py.
DOCUMENTS = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXAMPLES = REPO_ROOT / "examples"
DOCSTRING_SOURCES = [*sorted(EXAMPLES.glob("*.py")), REPO_ROOT / "mrm_hf" / "convert.py"]


def _join_lines(lines: list[str]) -> list[str]:
    """Shell commands from lines: continuation lines joined, comments and blank lines dropped, spaces normalised."""
    commands, current = [], ""
    for line in lines:
        text = line.strip()
        if not text or (text.startswith("#") and not current):
            continue
        current += " " + text.removesuffix("\\")
        if not text.endswith("\\"):
            commands.append(shlex.join(shlex.split(current, comments=True)))
            current = ""
    return commands


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def document_name(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def documented_commands() -> dict[str, list[str]]:
    """Each command of the documents' bash blocks and the scripts' docstrings, with the documents that show it."""
    found = {}
    for document in DOCUMENTS:
        for block in code_blocks(document.read_text(), "bash"):
            for command in _join_lines(block.splitlines()):
                found.setdefault(command, []).append(document_name(document))
    for path in DOCSTRING_SOURCES:
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        for command in _join_lines([line for line in docstring.splitlines() if line.startswith("    ")]):
            found.setdefault(command, []).append(path.name)
    return found


def ci_commands() -> list[str]:
    """The Quick start commands, which `.ci/run` reads from between their markers and runs as written."""
    text = README.read_text()
    blocks = [re.search(rf"<!-- {name} -->\n```bash\n(.*?)```\n<!-- /{name} -->", text, re.S) for name in
              ("demo-command", "test-command")]  # fmt: skip
    assert all(blocks), "README.md lost a Quick start marker"
    return [command for block in blocks for command in _join_lines(block.group(1).splitlines())]


# Commands that need what no test machine has: their arguments are checked, not run.
NEEDS = {
    "/data/mimic-cxr-jpg": "MIMIC-CXR-JPG (credentialed)",
    "--dataset mimic": "MIMIC-CXR-JPG (credentialed)",
    "/data/nih-chestxray14": "the full NIH ChestX-ray14",
    "--num_processes 4": "4 GPUs",
    "--nproc_per_node 4": "4 GPUs",
    "accelerate_multi_node.yaml": "2 machines of 8 GPUs",
    "accelerate_deepspeed_zero2.yaml": "8 GPUs and DeepSpeed",
    "accelerate_fsdp.yaml": "8 GPUs",
    "... --dataset": "the published downstream datasets",
    "--dataset siim": "SIIM-ACR (Kaggle)",
    "image-only=out/": "pre-trained models of one's own and a labelled dataset, for hours",
}


def needs(command: str) -> str | None:
    return next((what for marker, what in NEEDS.items() if marker in command), None)


def test_every_documented_command_is_run_or_checked():
    ci = set(ci_commands())
    assert ci == set(_join_lines(["pip install . && python examples/run_pretraining.py --args_file examples/configs/demo.args",
                                  'pip install -e ".[test]" && python -m pytest -q']))  # fmt: skip
    ci_script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "readme_command demo-command" in ci_script and "readme_command test-command" in ci_script
    uncovered = [c for c in documented_commands() if c not in ci and needs(c) is None and runner(c) is None]
    assert not uncovered, f"documented commands that no test runs or checks: {uncovered}"


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_every_docs_page_and_every_link_resolves():
    readme = README.read_text()
    pages = [document_name(page) for page in DOCUMENTS if page != README]
    unlinked = [page for page in pages if f"]({page})" not in readme and f"]({page}#" not in readme]
    assert not unlinked, f"README.md: expected a link to every page of docs/; found none to {unlinked}"
    broken = []
    for document in DOCUMENTS:
        for target, anchor in re.findall(r"\]\(([^)#\s:]+)(?:#([^)\s]+))?\)", document.read_text()):
            linked = document.parent / target
            anchors = {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)} \
                if linked.is_file() else set()  # fmt: skip
            if not linked.exists() or (anchor and anchor not in anchors):
                broken.append(f"{document_name(document)}: {target}{'#' + anchor if anchor else ''}")
    assert not broken, f"links to a missing file or heading: {broken}"


# ---- commands that run, at tiny sizes ----------------------------------------------------------------------------------

# Appended to a documented pre-training command: the demo's records and model, smaller and for 2 steps.
TINY_PRETRAINING = [
    "--demo_num_records", "32", "--demo_num_validation", "8", "--demo_image_size", "64", "--max_steps", "2",
    "--per_device_train_batch_size", "16", "--effective_batch_size", "16", "--num_figure_samples", "2",
    "--config_overrides", "image_size=16,patch_size=4,reconstruction_size=32,hidden_size=32,num_hidden_layers=1,"
    "num_attention_heads=2,intermediate_size=64,decoder_hidden_size=32,decoder_num_hidden_layers=1,"
    "decoder_num_attention_heads=2,decoder_intermediate_size=64,report_hidden_size=32,report_num_hidden_layers=1,"
    "report_num_attention_heads=2,report_intermediate_size=64",
    "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "true", "--log_level", "info",
]  # fmt: skip


def fake_published_checkpoint(path: Path, kind: str, num_classes: int = 14, image_size: int = 32) -> None:
    """A tiny random checkpoint in a published layout, with the default head counts (as the converter assumes)."""
    sizes = dict(img_size=image_size, patch_size=8, embed_dim=48, depth=1, num_heads=12)
    if kind == "classifier":
        model = published_classifier(num_classes=num_classes, **sizes)
    else:
        model = PublishedMRM(**sizes, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=6, bert_vocab_size=60,
                             bert_hidden_size=24, bert_layers=1, bert_heads=6, bert_intermediate_size=48,
                             bert_max_position=12)  # fmt: skip
    state_dict = randomize_(model, seed=0).state_dict()
    if kind == "encoder":  # MAE's ImageNet encoder: the ViT alone
        state_dict = {k: v for k, v in state_dict.items() if k.startswith(("cls_token", "pos_embed", "patch_embed.",
                                                                            "blocks.", "norm."))}  # fmt: skip
    torch.save({"model": state_dict}, path)


def run_convert(tokens: list[str], cwd: Path) -> None:
    from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMModel
    from mrm_hf.convert import main

    arguments = tokens[3:]
    checkpoint = arguments[arguments.index("--checkpoint") + 1]
    if "--tokenizer" in arguments:  # a vocabulary that fits the tiny checkpoint's 60 report tokens
        from mrm_hf.tokenization_mrm import train_report_tokenizer

        tokenizer = train_report_tokenizer(["no pleural effusion"] * 3, vocab_size=50)
        tokenizer.backend_tokenizer.save(str(cwd / arguments[arguments.index("--tokenizer") + 1]))
    labels = arguments[arguments.index("--label-names") + 1].split(",") if "--label-names" in arguments else None
    kind = "encoder" if checkpoint.startswith("mae") else "classifier" if "finetuned" in checkpoint else "pretraining"
    fake_published_checkpoint(cwd / checkpoint, kind, len(labels or range(14)))
    assert main(arguments) == 0
    output_dir = cwd / arguments[arguments.index("--output-dir") + 1]
    expected = {"encoder": MRMModel, "classifier": MRMForImageClassification, "pretraining": MRMForPreTraining}[kind]
    model = expected.from_pretrained(output_dir)
    if labels is not None:
        assert [model.config.id2label[i] for i in range(len(labels))] == labels


def run_timm_export(tokens: list[str], cwd: Path) -> None:
    """`python -m mrm_hf.timm_export` from an MRM folder converted from a tiny published checkpoint."""
    from mrm_hf.convert import main as convert
    from mrm_hf.timm_export import main

    arguments = tokens[3:]
    checkpoint = arguments[arguments.index("--checkpoint") + 1]
    fake_published_checkpoint(cwd / "MRM.pth", "pretraining")
    assert convert(["--checkpoint", str(cwd / "MRM.pth"), "--output-dir", str(cwd / checkpoint)]) == 0
    assert main(arguments) == 0
    assert (cwd / arguments[arguments.index("--output-dir") + 1] / "config.json").is_file()


def run_script(tokens: list[str], cwd: Path) -> None:
    """`python examples/<script>.py ...`, in this process, at tiny sizes, writing into cwd."""
    import importlib

    script = importlib.import_module(Path(tokens[1]).stem)
    arguments = [str(REPO_ROOT / t) if (REPO_ROOT / t).is_file() else t for t in tokens[2:]]  # paths are the repo's
    script.main([*arguments, *TINY_PRETRAINING, "--output_dir", str(cwd / "out")])
    assert (cwd / "out" / "model.safetensors").is_file() and (cwd / "out" / "README.md").is_file()


def run_launcher(tokens: list[str], cwd: Path) -> None:
    """`accelerate launch` / `torchrun` as written, at tiny sizes, from the repository root as the README runs them."""
    launchers = {"accelerate": [sys.executable, "-m", "accelerate.commands.launch"],
                 "torchrun": [sys.executable, "-m", "torch.distributed.run"]}  # fmt: skip
    start = 2 if tokens[0] == "accelerate" else 1
    command = [*launchers[tokens[0]], *tokens[start:], *TINY_PRETRAINING, "--output_dir", str(cwd / "out")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    printed = result.stdout + result.stderr
    assert result.returncode == 0, f"{shlex.join(tokens)}\n{printed[-4000:]}"
    processes = int(next((tokens[i + 1] for i, t in enumerate(tokens) if t in ("--num_processes", "--nproc_per_node")), 1))
    if any(t.endswith("run_pretraining_no_trainer.py") for t in tokens):
        assert f"Num processes: {processes}" in printed, printed[-3000:]
    else:  # the Trainer script says what it does, and where it wrote
        assert "Pre-training MRM on the demo records for 2 steps (total batch 16)" in printed, printed[-3000:]
        assert f"Done: model, processor (image processor and tokenizer), figure and model card in {cwd / 'out'}" in printed
        # each process took 16 / processes records per step
        assert processes == 1 or f"--per_device_train_batch_size 16 lowered to {16 // processes}" in printed
    assert (cwd / "out" / "model.safetensors").is_file()
    assert "| total batch | 16 |" in (cwd / "out" / "README.md").read_text()  # whatever the number of processes


def run_fill_report(tokens: list[str], cwd: Path) -> None:
    """`python examples/fill_report.py ...` on a tiny pre-training folder with its processor and a written image."""
    import fill_report

    from conftest import tiny_config
    from mrm_hf import MRMForPreTraining
    from mrm_hf.processing_mrm import processor_for_model
    from mrm_hf.tokenization_mrm import train_report_tokenizer

    arguments = tokens[2:]
    tokenizer = train_report_tokenizer(["no pleural effusion normal heart size"] * 3, vocab_size=60)
    model = MRMForPreTraining(tiny_config(report_vocab_size=len(tokenizer)))
    folder = cwd / arguments[arguments.index("--model") + 1]
    model.save_pretrained(folder)
    processor_for_model(model, tokenizer).save_pretrained(folder)
    Image.new("L", (40, 40), 128).save(cwd / arguments[arguments.index("--image") + 1])
    per_mask = fill_report.main(arguments)
    assert len(per_mask) == arguments[arguments.index("--report") + 1].count("[MASK]")


def write_own_images(cwd: Path) -> list[Path]:
    """The README's stand-ins for a user's own images, tiny: `my_images/` (8-bit and 16-bit PNGs of a bright disc, low
    or high as the first finding says, the whole image brighter with the second), `my_labels.csv` and `my_test.csv`
    (`image_path` and the two 0/1 findings, both values of each in each CSV), `my_masks/` and `my_masks.csv` (each
    image with its disc's mask). Returns the images."""
    import numpy as np

    if (cwd / "my_images").is_dir():
        return sorted((cwd / "my_images").iterdir())
    (cwd / "my_images").mkdir()
    (cwd / "my_masks").mkdir()
    generator = np.random.default_rng(0)
    rows, images = [], []
    for number in range(28):
        effusion, nodule = number % 2, (number // 2) % 2
        y, x = np.mgrid[:48, :40]
        disc = (y - 14 - 20 * effusion) ** 2 + (x - 20) ** 2 < 36
        pixels = generator.normal(90, 20, (48, 40)) + 120 * disc + 40 * nodule
        image = cwd / "my_images" / f"{number:04d}.png"
        if number % 7 == 0:  # some 16-bit PNGs, as a scanner writes them
            Image.fromarray((np.clip(pixels, 0, 255) * 257).astype(np.uint16)).save(image)
        else:
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image)
        Image.fromarray((disc * 255).astype(np.uint8)).save(cwd / "my_masks" / image.name)
        rows.append((f"my_images/{image.name}", effusion, nodule))
        images.append(image)
    for name, part in (("my_labels.csv", rows[:20]), ("my_test.csv", rows[20:])):
        (cwd / name).write_text("image_path,effusion,nodule\n" + "".join(f"{i},{e},{n}\n" for i, e, n in part))
    (cwd / "my_masks.csv").write_text("image_path,mask_path\n" + "".join(f"{i},my_masks/{Path(i).name}\n"
                                                                      for i, _, _ in rows))  # fmt: skip
    return images


def run_clinical(tokens: list[str], cwd: Path) -> None:
    """The DICOM pipeline one-liner and `python -m mrm_hf.predict` (with --explain too) on a tiny model saved under
    the documented name (a segmenter where the name says so, else a classifier). The images: a real DICOM
    (../shared/data/dicom) as study.dcm or, beside a 16-bit PNG, in studies/; the README's stand-ins for a user's own
    images in my_images/."""
    import shutil

    import numpy as np

    from conftest import save_tiny_folder, shared_path

    code = tokens[2] if tokens[1] == "-c" else None
    folder = cwd / (re.search(r'model="([^"]+)"', code).group(1) if code else tokens[3])
    labels = ["Effusion", "Pneumothorax"]
    segmenter = "segment" in folder.name
    if segmenter:
        save_tiny_folder(folder, "segmentation")
    else:
        save_tiny_folder(folder, "classifier", labels=labels)
    if code:
        shutil.copy(sorted(shared_path("data", "dicom").glob("*.dcm"))[0], cwd / "study.dcm")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
        result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert all(f"'label': '{label}'" in result.stdout for label in labels), result.stdout
        return
    from mrm_hf.predict import main

    arguments = tokens[3:]
    inputs = [a.rstrip("/") for a in arguments[1:arguments.index("--output_dir")]]
    images = []
    for name in inputs:
        if name == "my_images":
            images += write_own_images(cwd)
            continue
        dicom = sorted(shared_path("data", "dicom").glob("*.dcm"))[0]
        (cwd / name).mkdir()
        shutil.copy(dicom, cwd / name / dicom.name)
        ramp = cwd / name / "ramp16.png"
        Image.fromarray(np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) * 30).save(ramp)
        images += [cwd / name / dicom.name, ramp]
    summary = main([*arguments, "--num_workers", "0", *(["--explain_steps", "2"] if "--explain" in arguments else [])])
    assert (summary["scored"], summary["failed"]) == (len(images), 0), summary
    output_dir = cwd / arguments[arguments.index("--output_dir") + 1]
    written = {"explanations": "--explain" in arguments, "masks": segmenter, "overlays": segmenter}
    for subfolder in (name for name, expected in written.items() if expected):
        assert len(list((output_dir / subfolder).glob("*.png"))) == len(images), subfolder


# Appended to a fine-tuning command on the README's stand-ins for a user's own images: 2 steps, small batches.
TINY_FINE_TUNING = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
    "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
    "--use_cpu", "--disable_tqdm", "true", "--report_to", "none", "--dataloader_num_workers", "0",
]  # fmt: skip
TINY_SEGMENTATION = ["--image_size", "32", "--decoder_channels", "16", "--auxiliary_channels", "8", "--num_overlays",
                     "1"]  # fmt: skip


def run_own_images(tokens: list[str], cwd: Path) -> None:
    """A fine-tuning or table command of the README's "From the demo to your own images", as written but for 2 steps
    of small batches (and a smaller UperNet), from a tiny pre-training folder in place of the demo's
    `outputs/mrm-demo` (4 encoder blocks, as the demo's: UperNet reads four) on the stand-ins of `write_own_images`."""
    import importlib

    from conftest import save_tiny_folder
    from mrm_hf import MRMConfig, MRMForPreTraining

    demo = cwd / "outputs" / "mrm-demo"
    save_tiny_folder(demo, "pretraining")  # model, processor and report tokenizer, as the demo writes them
    config = MRMConfig.from_pretrained(demo)
    config.num_hidden_layers = 4
    MRMForPreTraining(config).save_pretrained(demo)
    write_own_images(cwd)

    script, arguments = importlib.import_module(Path(tokens[1]).stem), tokens[2:]
    output_dir = cwd / arguments[arguments.index("--output_dir") + 1]
    if script.__name__ == "run_label_efficiency":
        split = arguments.index("--")
        result = script.main([*arguments[:split], "--bootstrap_samples", "50", "--", *arguments[split + 1 :],
                              *TINY_FINE_TUNING])  # fmt: skip
        grid, _ = script.parse_arguments(arguments)
        assert len(result["rows"]) == len(grid.models) * len(grid.modes) * len(grid.fractions) * len(grid.seeds)
        assert all((output_dir / name).is_file() for name in ("results.csv", "results.md", "label_efficiency.png"))
        return
    segmentation = script.__name__ == "run_segmentation"
    script.main([*arguments, *TINY_FINE_TUNING, *(TINY_SEGMENTATION if segmentation else [])])
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "README.md").is_file()
    assert (output_dir / ("test_results.json" if segmentation else "eval_results.json")).is_file()


def run_app(tokens: list[str], cwd: Path) -> None:
    """`python examples/app.py --model FOLDER ...`: the page of a tiny folder of the documented kind (a pre-training
    folder for the demo's, else a classifier), built from the documented arguments but not served; tests/test_app.py
    serves each kind to a real browser."""
    pytest.importorskip("gradio", reason="the demo page needs gradio: pip install \"mrm-hf[app]\"")
    pytest.importorskip("captum", reason="the demo page's why-heatmaps need captum: pip install \"mrm-hf[app]\"")
    import app
    from conftest import save_tiny_folder

    args = app.parse_arguments(tokens[2:])
    kind = "pretraining" if "demo" in args.model else "classifier"
    save_tiny_folder(cwd / args.model, kind)
    page = app.Page(str(cwd / args.model), args.explain_top_k)
    assert page.kind == {"pretraining": app.PRETRAINING, "classifier": app.CLASSIFIER}[kind]
    assert app.build(page) is not None


def runner(command: str):
    """How a documented command runs at tiny sizes, or None."""
    if needs(command) is not None:
        return None
    tokens = shlex.split(command)
    if tokens[:3] == ["python", "-m", "mrm_hf.convert"]:
        return run_convert
    if tokens[:3] == ["python", "-m", "mrm_hf.timm_export"]:
        return run_timm_export
    if tokens[0] == "python" and tokens[1].startswith("examples/run_pretraining"):
        return run_script
    fine_tuning = ("examples/run_classification.py", "examples/run_segmentation.py", "examples/run_label_efficiency.py")
    if tokens[0] == "python" and tokens[1] in fine_tuning and "outputs/mrm-demo" in command:
        return run_own_images
    if tokens[:2] == ["python", "examples/fill_report.py"]:
        return run_fill_report
    if tokens[:3] == ["python", "-m", "mrm_hf.predict"] or (tokens[:2] == ["python", "-c"] and ".dcm" in tokens[2]):
        return run_clinical
    if tokens[:2] == ["python", "examples/app.py"]:
        return run_app
    if tokens[0] in ("accelerate", "torchrun") and "examples/configs/demo.args" in tokens:
        return run_launcher
    return None


RUNNABLE = [c for c in documented_commands() if runner(c) is not None]


def ids(commands: list[str]) -> list[str]:
    return [re.sub(r"[^\w./=-]+", "_", command)[:90] for command in commands]


@pytest.mark.parametrize("command", RUNNABLE, ids=ids(RUNNABLE))
def test_documented_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner(command)(shlex.split(command), tmp_path)


# ---- commands that need GPUs or credentialed data: their arguments are parsed -------------------------------------


def parse_script_arguments(script: str, arguments: list[str]) -> None:
    """Parse as the script does; a CPU machine stands in for the GPUs (--use_cpu), without changing any argument."""
    from transformers import HfArgumentParser

    arguments = [a for a in arguments if a != "..."]
    if "--bf16" in arguments:
        arguments.append("--use_cpu")  # TrainingArguments refuses bf16 on a machine without a GPU
    if script == "run_classification.py":
        from run_classification import parse_arguments

        parse_arguments(arguments)
        return
    if script == "run_segmentation.py":
        import run_segmentation

        run_segmentation.parse_arguments(arguments)
        return
    if script == "run_label_efficiency.py":  # the grid's own options, then every run's command line
        import run_label_efficiency
        from run_classification import parse_arguments

        grid, passthrough = run_label_efficiency.parse_arguments(arguments)
        for model, path in grid.models.items():
            for mode in grid.modes:
                run = run_label_efficiency.Run(model, mode, grid.fractions[0], grid.seeds[0])
                parse_arguments(run_label_efficiency.run_argv(run, path, Path(grid.output_dir), passthrough,
                                                              grid.random_config, grid.lora))
        return
    from pretraining_setup import DataArguments, ModelArguments, PretrainingArguments

    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    _, data_args, _ = parser.parse_args_into_dataclasses(arguments, args_file_flag="--args_file", look_for_args_file=False)
    assert data_args.dataset in ("demo", "mimic", "training_csv", "disk")


CHECKED = [c for c in documented_commands() if needs(c) is not None]


@pytest.mark.parametrize("command", CHECKED, ids=ids(CHECKED))
def test_documented_command_for_other_hardware_or_data_parses(command):
    tokens = shlex.split(command)
    if tokens[0] == "...":  # a variant of the command above it, in the docstring of its script
        (document,) = set(documented_commands()[command])
        tokens = ["python", f"examples/{document}", "--model_name_or_path", "mrm-base", *tokens[1:]]
    if tokens[0] == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        launched = launch_command_parser().parse_args(tokens[2:])
        if launched.config_file is not None:
            assert (REPO_ROOT / launched.config_file).is_file(), launched.config_file
        script, arguments = launched.training_script, launched.training_script_args
    elif tokens[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        launched = get_args_parser().parse_args(tokens[1:])
        script, arguments = launched.training_script, launched.training_script_args
    elif tokens[:3] == ["python", "-m", "mrm_hf.data.prepare"]:
        from mrm_hf.data.prepare import parse_arguments

        parse_arguments(tokens[3:])
        return
    else:
        assert tokens[0] == "python", command
        script, arguments = tokens[1], tokens[2:]
    assert (REPO_ROOT / script).is_file(), script
    parse_script_arguments(Path(script).name, arguments)


# ---- Python snippets ----------------------------------------------------------------------------------------------


# The README's Python blocks, and each generated card's, run as written in a fresh process against a folder of their
# kind: tests/test_fresh_install.py.


def card_snippets(card: Path) -> list[str]:
    return code_blocks(card.read_text(), "python")


def test_pretraining_card_snippet_gives_encoder_features(tmp_path, monkeypatch):
    import run_pretraining

    output_dir = tmp_path / "mrm-tiny"
    run_pretraining.main(["--args_file", str(EXAMPLES / "configs" / "demo.args"), *TINY_PRETRAINING, "--output_dir",
                          str(output_dir)])  # fmt: skip
    (snippet,) = card_snippets(output_dir / "README.md")
    assert f'"{output_dir}"' in snippet  # the card names the model by its folder as given (or its Hub id)
    monkeypatch.chdir(tmp_path)
    Image.new("L", (120, 90), 100).save(tmp_path / "chest_xray.png")  # the card's placeholder
    namespace = {}
    exec(compile(snippet, "mrm_pretraining.md", "exec"), namespace)  # noqa: S102
    assert namespace["features"].shape == (1, 32)


@pytest.mark.parametrize("labels", [["COVID-19"], ["Atelectasis", "Effusion", "Edema"]])
def test_classification_card_reads_right_and_its_snippet_returns_what_it_says(labels, tmp_path, monkeypatch):
    from mrm_hf import MRMConfig, MRMForImageClassification
    from mrm_hf.hub import write_model_card
    from run_classification import image_processor_for

    config = MRMConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=len(labels), problem_type="multi_label_classification",
                       id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})  # fmt: skip
    folder = tmp_path / "mrm-classifier"
    model = MRMForImageClassification(config)
    model.save_pretrained(folder)
    image_processor_for(model).save_pretrained(folder)
    card = write_model_card(
        folder, REPO_ROOT / "model_cards" / "mrm_classification.md", model_name=folder.name, repo_id=folder.name,
        source_model="mrm-base", class_names=labels, multi_label=True, image_size=32, dataset_description="Tiny.",
        hyperparameters={}, results_split="test", metrics={"mean AUC": 0.5}, pipeline_tag="image-classification",
    )  # fmt: skip
    text = card.read_text()
    if len(labels) == 1:
        assert "It predicts one finding, COVID-19, as a sigmoid score" in text and "top_k" not in text
    else:
        assert "It predicts 3 findings, each independently (sigmoid scores): Atelectasis, Effusion, Edema." in text
        assert "top_k=3)  # all 3 classes, each with its sigmoid score" in text
    assert "1 findings" not in text
    (snippet,) = card_snippets(card)
    monkeypatch.chdir(tmp_path)
    Image.new("L", (80, 64), 90).save(tmp_path / "chest_xray.png")
    namespace = {}
    exec(compile(snippet.replace("classifier(", "scores = classifier(", 1), "mrm_classification.md", "exec"), namespace)  # noqa: S102
    scores = namespace["scores"]
    assert sorted(s["label"] for s in scores) == sorted(labels)
    assert all(0 < s["score"] < 1 for s in scores)
