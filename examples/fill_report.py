#!/usr/bin/env python
"""Fill the [MASK] words of a radiology report from its image, with an MRM pre-training folder's report branch.

    python examples/fill_report.py --model mrm-demo --image chest.png --report "no pleural [MASK]. [MASK] heart size."

Prints, for each [MASK] in order, the top-k tokens and their probabilities. The folder must hold MRMForPreTraining and
its MRMProcessor (every pre-training run writes them; `python -m mrm_hf.convert --tokenizer mimic_wordpiece.json` does
for the published MRM.pth).
"""

import argparse

from transformers import pipeline

import mrm_hf  # noqa: F401  (registers the "mrm-report-fill-mask" pipeline)


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an MRM pre-training folder (or Hub id)")
    parser.add_argument("--image", required=True, help="the record's image: PNG, JPEG or DICOM")
    parser.add_argument("--report", required=True, help="the report, with [MASK] where words are to be filled")
    parser.add_argument("--top_k", type=int, default=5, help="candidates per [MASK]")
    args = parser.parse_args(argv)

    fill = pipeline("mrm-report-fill-mask", model=args.model)
    result = fill(args.image, args.report, top_k=args.top_k)
    per_mask = result if isinstance(result[0], list) else [result]
    for index, candidates in enumerate(per_mask, start=1):
        print(f"[MASK] {index}: " + ", ".join(f"{c['token_str']} ({c['score']:.3f})" for c in candidates))
    return per_mask


if __name__ == "__main__":
    main()
