#!/usr/bin/env python
"""Pre-train MRM with the Hugging Face Trainer.

The built-in synthetic demo, a small model on CPU in a few minutes:

    python examples/run_pretraining.py --args_file examples/configs/demo.args

MIMIC-CXR-JPG with the published recipe (ViT-B, effective batch 256, 200 epochs), from MAE's ImageNet encoder:

    python -m mrm_hf.convert --checkpoint mae_pretrain_vit_base.pth --output-dir mae-vit-base
    python examples/run_pretraining.py --dataset mimic --data_dir /data/mimic-cxr-jpg \
        --tokenizer_name mimic_wordpiece.json --init_encoder_from mae-vit-base \
        --per_device_train_batch_size 64 --bf16 --output_dir mrm-mimic

Any argument of `--args_file` can be overridden on the command line after it.
"""

import logging
from pathlib import Path

from transformers import set_seed

from mrm_hf.checkpoints import resolve_checkpoint
from mrm_hf.figures import save_reconstruction_figure
from mrm_hf.hub import check_hub_access, schedule_length, total_batch
from mrm_hf.processing_mrm import processor_for_model
from mrm_hf.training import MRMPreTrainer, check_engine, derive_schedule
from mrm_hf.utils import setup_logging
from pretraining_setup import (
    device_augmentation,
    figure_samples,
    image_processor_for,
    load_model,
    load_records,
    load_tokenizer,
    parse_arguments,
    prepare,
    write_card,
)


logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args.get_process_log_level())
    check_hub_access(training_args)

    set_seed(training_args.seed)
    derive_schedule(training_args, training_args.world_size)
    logger.info(
        "Pre-training MRM on the %s records for %s (total batch %d) into %s", data_args.dataset,
        schedule_length(training_args), total_batch(training_args), training_args.output_dir,
    )  # fmt: skip
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir, "checkpoint-")
    records = load_records(data_args, training_args.seed, reports=not model_args.image_only)
    tokenizer = load_tokenizer(  # None under --image_only
        model_args,
        records["train"],
        checkpoint,
        training_args.output_dir,
        lambda: training_args.main_process_first(local=False, desc="report tokenizer"),
        training_args.process_index == 0,
    )
    model = load_model(model_args, tokenizer)
    image_processor = image_processor_for(model, model_args)
    processor = processor_for_model(model, tokenizer, image_processor)  # saved in every checkpoint by Trainer
    records, collator = prepare(records, model, image_processor, tokenizer, data_args, seed=training_args.seed)

    results = {}
    trainer = MRMPreTrainer(
        model=model,
        args=training_args,
        train_dataset=records["train"],
        eval_dataset=records.get("validation"),
        data_collator=collator,
        processing_class=processor,
        decay_tokens=training_args.decay_tokens,
        device_augmentation=device_augmentation(
            model, image_processor, data_args, collator.draws, training_args.device
        ),
        model_card=lambda folder: write_card(
            folder, model, model_args, data_args, training_args,
            metrics={k: v for k, v in results.items() if "loss" in k or k == "epoch"},
        ),  # fmt: skip
    )
    check_engine(trainer.accelerator, training_args)  # an FSDP or DeepSpeed config that this run would not use stops it
    train_result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    results.update(train_result.metrics)
    if "validation" in records:
        results.update(trainer.evaluate())
    trainer.log_metrics("all", results)
    trainer.save_metrics("all", results)
    trainer.save_state()
    # Every process draws: a sharded model's forward needs them all; the main one writes.
    samples = figure_samples(records, model, image_processor, data_args.num_figure_samples)
    figure = save_reconstruction_figure(
        model, samples, image_processor, Path(training_args.output_dir) / "reconstruction.png",
        is_main_process=trainer.is_world_process_zero(),
    )  # fmt: skip
    logger.info("Reconstruction figure: %s", figure)
    # Saving last: with --push_to_hub, Trainer uploads the whole folder here, model card included.
    trainer.save_model()
    if not training_args.push_to_hub:
        trainer.create_model_card()
    saved = "image processor" if tokenizer is None else "processor (image processor and tokenizer)"
    logger.info("Done: model, %s, figure and model card in %s", saved, training_args.output_dir)
    return results


if __name__ == "__main__":
    main()
