"""What the example scripts' command lines share: published recipes as the parser's defaults, the arguments each
`--dataset` requires, and range checks, each written once so that the scripts refuse the same mistake in the same
words."""

import argparse
from collections.abc import Mapping, Sequence


def recipe_defaults(argv: Sequence[str], recipes: Mapping[tuple[str, int], dict]) -> dict:
    """The TrainingArguments defaults that `--recipe NAME --label_fraction N` in `argv` stand for (empty without
    `--recipe`), from `recipes` keyed by (name, percent of the training labels).

    A script hands them to `HfArgumentParser.set_defaults` before parsing, so that every value given on the command
    line (in any spelling argparse accepts: `--lr 1`, `--learning_rate=1`, `--no_...`) overrides the recipe and
    nothing has to guess which arguments were typed.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--recipe", choices=sorted({name for name, _ in recipes}))
    parser.add_argument("--label_fraction", "--label-fraction", type=int, default=100)  # both spellings HF accepts
    known, _ = parser.parse_known_args(list(argv))
    if known.recipe is None:
        return {}
    if (known.recipe, known.label_fraction) not in recipes:
        available = sorted(f"{name} {fraction}%" for name, fraction in recipes)
        raise ValueError(f"--recipe {known.recipe} --label_fraction {known.label_fraction}: expected a published "
                         f"recipe, one of {available}; found no published recipe for {known.recipe} with "
                         f"{known.label_fraction}% of the labels.")
    return dict(recipes[known.recipe, known.label_fraction])


def require_arguments(where: str, arguments, needs: Sequence[str] | Mapping[str, str]) -> None:
    """Refuse, naming each one, the options in `needs` (fields of the parsed `arguments`; a mapping also says what
    each should hold) left unset where `where` (e.g. `--dataset nih`) needs them."""
    what = needs if isinstance(needs, Mapping) else {}
    missing = [name for name in needs if getattr(arguments, name) is None]
    if missing:
        wanted = " and ".join(f"--{name}" + (f" ({what[name]})" if name in what else "") for name in missing)
        raise ValueError(f"{where}: expected {wanted}; found {'no value' if len(missing) == 1 else 'none of them'}.")


def check_range(option: str, value: float, low: float, high: float, low_open: bool = False, high_open: bool = True):
    """Refuse `value` of `option` outside the interval from `low` to `high` ([low, high) by default)."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{option}: expected a value in {interval}; found {value}.")


def check_layer_decay(layer_decay: float | None) -> None:
    """`--layer_decay`, the factor each encoder block's learning rate shrinks by per block below the head: in (0, 1]."""
    if layer_decay is not None:
        check_range("--layer_decay", layer_decay, 0.0, 1.0, low_open=True, high_open=False)


__all__ = ["check_layer_decay", "check_range", "recipe_defaults", "require_arguments"]
