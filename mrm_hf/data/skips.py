"""What a loader leaves out of its input, reported the same way by every loader.

`Skips` follows one file (or folder) record by record: each record left out is kept with its place ("line 3",
"row 3 (name.jpg)", "dicom_id ...") and its reason; `strict=True` raises the loader's error at the first one, naming
its place; otherwise `finish` raises when no record is usable and else gives one warning (logged and warned) with the
count, the reasons and the first places. `left_out` reports, in one message, the names of a list that were checked
all at once (images not on disk, unreadable images, masks of the wrong size).
"""

import logging
import warnings
from collections import Counter


logger = logging.getLogger(__name__)

EXAMPLES = 5  # how many places a message names


def _warn(message: str, stacklevel: int) -> None:
    """Log `message` and warn it (UserWarning) once, pointing `stacklevel` frames above the caller."""
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)


def _examples(items: list[str], separator: str) -> str:
    """The first `EXAMPLES` items, and how many more there are."""
    more = len(items) - EXAMPLES
    return separator.join(items[:EXAMPLES]) + (f"{separator}and {more} more" if more > 0 else "")


class Skips:
    """The records of one `source` left out, with their place and reason; see the module docstring.

    `error`: the loader's exception class. `what`: what the source holds ("records", "lines"); `kind`: a word for
    what is left out ("malformed"). `by_reason`: count the records left out per reason in the messages (for reasons
    that are categories, such as "missing image").
    """

    def __init__(
        self,
        source,
        strict: bool,
        error: type[Exception] = ValueError,
        what: str = "records",
        kind: str = "",
        by_reason: bool = False,
    ):
        self.source, self.strict, self.error = str(source), strict, error
        self.what, self.kind, self.by_reason = what, kind, by_reason
        self.item = what.removesuffix("s")  # one record, line or image
        self.skipped: list[tuple[str, str, str]] = []  # (place, reason, detail)

    def skip(self, place: str, reason: str | None = None, detail: str = "", *, expected: str | None = None,
             found: str | None = None) -> None:
        """Leave out the record at `place` (`detail`: its text or file) for `reason`, a category ("missing image") or a
        short sentence ("label '11' is not 0 or 1"), or for holding not what `expected` says but what `found` says
        ("a name and 2 labels", "3 fields"). In strict mode, raise `<source>, <place>: expected ...; found ...`."""
        if reason is None:
            reason = f"expected {expected}" + (f", found {found}" if found is not None else "")
        if self.strict:
            if expected is None:
                expected, found = f"a usable {self.item}", f"{detail} ({reason})" if detail else reason
            elif found is None:
                found = detail
            elif detail:
                found = f"{found} ({detail})"
            raise self.error(f"{self.source}, {place}: expected {expected}; found {found}.")
        self.skipped.append((place, reason, detail))

    def finish(self, total: int) -> None:
        """After all `total` records: raise if none is usable, else warn once about those left out."""
        counts = Counter(reason for _, reason, _ in self.skipped)
        by_reason = " (" + ", ".join(f"{r}: {n}" for r, n in sorted(counts.items())) + ")" if self.by_reason else ""
        places = [f"{place}: {detail} ({reason})" if detail else f"{place} ({reason})"
                  for place, reason, detail in self.skipped]
        if len(self.skipped) == total:
            shown = f": {_examples(places, '; ')}" if places else ""
            raise self.error(
                f"{self.source}: expected at least one usable {self.item}; found none of {total} candidates"
                f"{by_reason}{shown}."
            )
        if self.skipped:
            kind = f"{self.kind} " if self.kind else ""
            _warn(
                f"Skipped {len(self.skipped)} {kind}of {total} {self.what} in {self.source}{by_reason}: "
                f"{_examples(places, '; ')}. Pass strict=True to raise instead.",
                stacklevel=3,
            )


def left_out(where: str, names: list[str], total: int, description: str, strict: bool, error: type[Exception],
             hint_if_all: str = "") -> None:
    """Report `names`, left out of `total` for the reason `description` gives ("images named in X are not under Y"):
    raise `error`, naming `where`, in strict mode or when all are, adding `hint_if_all` then; else warn once."""
    if not names:
        return
    shown = ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")
    message = f"{len(names)} of {total} {description} (e.g. {shown})"
    if strict:
        raise error(f"{where}: expected none left out (strict); found {message}.")
    if len(names) == total:
        raise error(f"{where}: expected at least one usable; found {message}{hint_if_all or '.'}")
    _warn(f"{message}; they are left out. Pass strict=True to raise instead.", stacklevel=3)


__all__ = ["Skips", "left_out"]
