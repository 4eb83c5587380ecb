"""What goes to the Hub: model cards filled from `model_cards/` templates, and an early check that an upload at the
end of a run can happen."""

import math
from pathlib import Path


def check_hub_access(training_args) -> None:
    """With --push_to_hub, stop at start, in one line, when the upload at the end could not happen."""
    if not training_args.push_to_hub:
        return
    from huggingface_hub import HfApi, constants

    fix = "or drop --push_to_hub and upload the output folder later with `hf upload <repo_id> <output_dir>`"
    if constants.HF_HUB_OFFLINE:
        raise SystemExit(f"error: --push_to_hub: expected the Hub; found offline mode on (HF_HUB_OFFLINE=1): unset it, "
                         f"{fix}.")
    try:
        HfApi(token=training_args.hub_token).whoami()
    except Exception as error:  # no token, a rejected token, or no connection
        found = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(
            f"error: --push_to_hub: expected a logged-in connection to the Hub; found it failing ({found}): log in "
            f"with `hf auth login` or pass --hub_token, {fix}."
        ) from None


def write_model_card(
    output_dir: str | Path,
    template_path: str | Path,
    *,
    license: str = "mit",
    datasets: list[str] | None = None,
    tags: list[str] | None = None,
    pipeline_tag: str = "image-feature-extraction",
    base_model: str | None = None,
    metrics: dict[str, float] | None = None,
    eval_results: list | None = None,
    **fields,
) -> Path:
    """Fill a model card template from `model_cards/` with Hub metadata and results; write it as README.md.

    `datasets` must hold Hub dataset ids only (the Hub links each); `eval_results` (huggingface_hub `EvalResult`s)
    become the card's `model-index`, under `fields["model_name"]`.
    """
    from huggingface_hub import ModelCard, ModelCardData

    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        datasets=datasets,
        tags=sorted({"mrm", "chest-x-ray", "medical-imaging", *(tags or [])}),
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=fields.get("model_name") if eval_results else None,
        eval_results=eval_results or None,
    )
    results = {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in (metrics or {}).items()}
    card = ModelCard.from_template(card_data, template_path=str(template_path), results=results, **fields)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def card_identity(training_args, source_model: str | None) -> dict:
    """The card fields every training script fills alike: `repo_id` (the Hub id, or the output folder as the command
    named it: what the card's snippet opens), `model_name`, and `base_model`, the source checkpoint when it is a Hub
    id (only Hub ids are metadata; a local folder or no source gives None)."""
    repo_id = training_args.hub_model_id or training_args.output_dir
    base_model = None if source_model is None or Path(source_model).exists() else source_model
    return {"model_name": Path(repo_id).name, "repo_id": repo_id, "base_model": base_model}


def option_name(option) -> str:
    """An option of TrainingArguments (an enum, such as `optim` or `lr_scheduler_type`) by its value."""
    return str(getattr(option, "value", option))


def total_batch(training_args) -> int:
    """Examples per optimizer step: per-device batch x processes x gradient accumulation."""
    return (training_args.per_device_train_batch_size * training_args.world_size
            * training_args.gradient_accumulation_steps)


def schedule_length(training_args) -> str:
    """The run's length as the card gives it: its steps when --max_steps is set, else its epochs."""
    if training_args.max_steps > 0:
        return f"{training_args.max_steps} steps"
    return f"{training_args.num_train_epochs:g} epochs"


def card_results(metrics: dict, names: dict[str, str]) -> dict:
    """The card's `results_split` (test when the run tested, else validation) and `metrics`: that split's results
    named by `names` (a metric without its split prefix -> the card's name for it), those the run reported. The first
    of `names` tells which splits ran."""
    first = next(iter(names))
    for prefix, split in (("test", "test"), ("eval", "validation")):
        if f"{prefix}_{first}" in metrics:
            found = {label: metrics[f"{prefix}_{key}"] for key, label in names.items() if f"{prefix}_{key}" in metrics}
            return {"results_split": split, "metrics": found}
    return {"results_split": None, "metrics": {}}


__all__ = [
    "card_identity",
    "card_results",
    "check_hub_access",
    "option_name",
    "schedule_length",
    "total_batch",
    "write_model_card",
]
