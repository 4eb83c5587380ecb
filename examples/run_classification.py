#!/usr/bin/env python
"""Fine-tune MRM for chest X-ray classification with the Hugging Face Trainer.

NIH ChestX-ray14 with 1% of the labels and the published recipe, from the converted published MRM:

    python -m mrm_hf.convert --checkpoint MRM.pth --output-dir mrm-base
    python examples/run_classification.py --model_name_or_path mrm-base --dataset nih \
        --data_dir /data/nih-chestxray14 --split_dir MRM-pytorch/DatasetsSplits --label_fraction 1 \
        --recipe nih --output_dir mrm-nih-1pct

The other published tasks (`--recipe` takes the task's learning rate, warm-up and steps as defaults; any value given
on the command line, e.g. `--learning_rate 1e-3`, wins):

    ... --dataset chexpert --data_dir /data --split_dir DatasetsSplits --label_fraction 10 --recipe chexpert
    ... --dataset rsna --data_dir /data/rsna --split_dir DatasetsSplits --label_fraction 1 --recipe rsna
    ... --dataset covid --data_dir covid-chestxray-dataset/images --split_dir DatasetsSplits --covid_task viral \
        --covid_split 3 --recipe covid
    ... --dataset csv --train_csv train.csv --validation_csv val.csv --test_csv test.csv --label_columns a,b,c
    ... --dataset imagefolder --data_dir folder   # folder/{train,validation,test}/<class>/*.png, softmax

The best checkpoint by validation mean AUC is tested; `test_results.json` and `all_results.json` hold the per-class
and mean AUC (null where a class has one label value only), `test_predictions.csv` every test image's logits, and the
output folder works with `pipeline("image-classification", model=output_dir)`.
"""

import logging
from pathlib import Path

from transformers import set_seed

from mrm_hf.data import label_names
from mrm_hf.finetuning import (
    ClassificationCollator,
    ClassificationTrainer,
    card_eval_results,
    card_results,
    image_processor_for,
    json_safe_metrics,
    load_data,
    load_model,
    model_card_fields,
    parse_arguments,
    prepare,
    printable_metrics,
    problem_type_of,
    processing_class_for,
    write_predictions,
)
from mrm_hf.metrics import make_compute_metrics
from mrm_hf.training import check_hub_access, write_model_card
from mrm_hf.utils import setup_logging


logger = logging.getLogger(__name__)
MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "mrm_classification.md"


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args.get_process_log_level())
    check_hub_access(training_args)

    set_seed(training_args.seed)
    data = load_data(data_args, training_args.seed)
    class_names, problem_type = label_names(data["train"]), problem_type_of(data)
    logger.info("%s: %s, classes %s, %s", data_args.dataset, {k: len(v) for k, v in data.items()}, class_names,
                problem_type)
    model = load_model(model_args, class_names, problem_type)
    image_processor = image_processor_for(model)
    splits = prepare(data, image_processor, model.config.image_size, data_args.crop_min_scale)

    results = {}
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=ClassificationCollator(problem_type),
        processing_class=processing_class_for(model, model_args.model_name_or_path, image_processor),
        compute_metrics=make_compute_metrics(class_names, problem_type),
        layer_decay=model_args.layer_decay,
        model_card=lambda folder: write_model_card(
            folder,
            MODEL_CARD_TEMPLATE,
            metrics=card_results(results, class_names)[1],
            results_split=card_results(results, class_names)[0],
            eval_results=card_eval_results(results, class_names, data_args.dataset),
            **model_card_fields(model, model_args, data_args, training_args, len(data["train"])),
        ),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = {**train_result.metrics, "train_samples": len(data["train"])}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    metrics = json_safe_metrics(trainer.evaluate(), "eval", class_names)
    metrics["eval_samples"] = len(data["validation"])
    trainer.log_metrics("eval", printable_metrics(metrics))
    trainer.save_metrics("eval", metrics)
    results.update(metrics)

    if "test" in splits:
        prediction = trainer.predict(splits["test"], metric_key_prefix="test")
        metrics = {**json_safe_metrics(prediction.metrics, "test", class_names), "test_samples": len(data["test"])}
        trainer.log_metrics("test", printable_metrics(metrics))
        trainer.save_metrics("test", metrics)  # test_results.json, and all_results.json with train and eval
        results.update(metrics)
        if trainer.is_world_process_zero():
            write_predictions(Path(training_args.output_dir) / "test_predictions.csv", data["test"]["image_path"],
                              prediction.predictions, prediction.label_ids, class_names, problem_type)
    else:
        logger.warning("The %s data has no test split: only the validation AUC is reported.", data_args.dataset)

    # The best checkpoint, with the image processor and the code for trust_remote_code; saved last because with
    # --push_to_hub Trainer uploads the whole folder here, model card and test results included.
    trainer.save_model()
    if not training_args.push_to_hub:
        trainer.create_model_card()
    return results


if __name__ == "__main__":
    main()
