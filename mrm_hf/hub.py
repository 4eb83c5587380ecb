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
        raise SystemExit(f"error: --push_to_hub needs the Hub, but offline mode is on (HF_HUB_OFFLINE=1): unset it, {fix}.")
    try:
        HfApi(token=training_args.hub_token).whoami()
    except Exception as error:  # no token, a rejected token, or no connection
        found = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(
            f"error: --push_to_hub needs a logged-in connection to the Hub, but it failed ({found}): log in with "
            f"`hf auth login` or pass --hub_token, {fix}."
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


__all__ = ["check_hub_access", "write_model_card"]
