"""Small helpers every part of mrm_hf uses the same way: logging set-up, checking a named choice or a table's columns,
and applying `--config_overrides` to a config."""

import logging
import sys
from collections.abc import Iterable


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stdout at `level` for mrm_hf, `datasets` and `transformers` (run scripts pass each process's level:
    the main process talks, replicas only warn)."""
    import datasets
    import transformers

    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO, stream=sys.stdout)
    for library in (datasets.utils.logging, transformers.utils.logging):
        library.set_verbosity(level)
    logging.getLogger("mrm_hf").setLevel(level)


def check_choice(name: str, value, choices: Iterable, where: str | None = None):
    """`value` if it is one of `choices`, else a ValueError that says what was expected, what was found and where."""
    choices = tuple(choices)
    if value not in choices:
        place = f" ({where})" if where else ""
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}; found {value!r}{place}.")
    return value


def check_columns(where, required: Iterable[str], found: Iterable[str]) -> None:
    """Refuse a table (a CSV at `where`) whose header `found` lacks any of the `required` columns, naming them."""
    required, found = list(required), list(found)
    missing = [column for column in required if column not in found]
    if missing:
        raise ValueError(f"{where}: expected the columns {required}; found {found}, without {missing}.")


def apply_config_overrides(config, overrides: str) -> None:
    """Apply `--config_overrides` ("key=value,key=value") to a config, naming the pair or field that is wrong."""
    expected = "comma-separated key=value pairs of MRMConfig fields, e.g. 'hidden_size=192,num_hidden_layers=4'"
    for pair in overrides.split(","):
        key, equals, value = pair.partition("=")
        if not equals or "=" in value or not key.strip():
            raise ValueError(f"--config_overrides: expected {expected}; found {pair!r} in {overrides!r}.")
        if not hasattr(config, key.strip()):
            raise ValueError(f"--config_overrides: expected {expected}; found the unknown field {key.strip()!r}.")
    given = {pair.partition("=")[0].strip() for pair in overrides.split(",")}
    try:
        config.update_from_string(overrides)
        if "image_size" in given and "reconstruction_size" not in given and hasattr(config, "reconstruction_size"):
            config.reconstruction_size = 2 * config.image_size  # not given: the published ratio, as MRMConfig derives it
        config.validate()
    except ValueError as error:
        raise ValueError(f"--config_overrides {overrides!r}: {error}") from error


__all__ = ["LOG_FORMAT", "apply_config_overrides", "check_choice", "setup_logging"]
