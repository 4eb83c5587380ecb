"""Seeded data randomness (random crops, flips, report masks) that does not depend on where it is drawn.

A sample's draws come from a torch.Generator seeded by (seed, purpose, epoch, sample index) alone, never from a
stream shared with other samples. So a sample gets new crops and masks every epoch; DataLoader workers and processes,
which handle different samples, draw differently; the draws do not change with the batch size, the number of workers
or prefetching; and a run resumed mid-epoch draws exactly what the uninterrupted run drew, whatever batches were
skipped. The training loop says which epoch it is (`set_epoch`), before it builds that epoch's DataLoader iterator
(workers copy the epoch when they start, so persistent workers would keep the first one).

Draws without a sample index (a dataset without the `SAMPLE_INDEX` column) come from one generator per (seed,
purpose, epoch, process, worker and its torch seed) that advances with each draw: reproducible for the same sequence
of batches, but not across a resume mid-epoch. With `seed=None` every draw uses torch's global generator, as torch
functions do.
"""

import zlib

import numpy as np
import torch
from torch.utils.data import get_worker_info


SAMPLE_INDEX = "sample_index"


def _process_index() -> int:
    """This process's rank in a torch.distributed run, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


class SeededDraws:
    """Torch generators keyed by (seed, purpose, epoch, sample index); one serves a transform and a collator."""

    def __init__(self, seed: int | None, epoch: int = 0):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"SeededDraws seed: expected an integer or None; found {seed!r}.")
        self.seed = None if seed is None else int(seed)
        self.epoch = int(epoch)
        self._streams = {}

    def set_epoch(self, epoch: int) -> None:
        """Draw the given epoch's numbers from now on (call it before building the epoch's DataLoader iterator)."""
        self.epoch = int(epoch)

    def _seed_for(self, purpose: str, *keys: int) -> int:
        entropy = [self.seed & (2**64 - 1), zlib.crc32(purpose.encode()), self.epoch, *keys]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])

    def for_sample(self, index, purpose: str) -> torch.Generator | None:
        """The generator of one sample's `purpose` draws ("crop", "mask", ...) this epoch; None without a seed or
        index (then use `stream`)."""
        if self.seed is None:
            return None
        if index is None:
            return self.stream(purpose)
        index = int(index)
        if index < 0:
            raise ValueError(f"SeededDraws.for_sample({purpose!r}): expected a sample index >= 0; found {index}.")
        return torch.Generator().manual_seed(self._seed_for(purpose, index))

    def for_samples(self, indices, purpose: str) -> list | torch.Generator | None:
        """One generator per sample when every index is known, else this process's stream (or None without a seed)."""
        if self.seed is None:
            return None
        if indices is None or any(index is None for index in indices):
            return self.stream(purpose)
        return [self.for_sample(index, purpose) for index in indices]

    def stream(self, purpose: str) -> torch.Generator | None:
        """A generator for draws with no sample index: one per (purpose, epoch, process, worker), advancing."""
        if self.seed is None:
            return None
        info = get_worker_info()
        # A worker's torch seed changes with every DataLoader iterator, so streams differ between epochs even when
        # no epoch is set; it is reproducible whenever the DataLoader's generator (or torch's global seed) is fixed.
        worker = (0, 0) if info is None else (info.id + 1, info.seed)
        key = (purpose, self.epoch, _process_index(), *worker)
        if key not in self._streams:
            self._streams[key] = torch.Generator().manual_seed(self._seed_for(purpose, 2**32, *key[2:]))
        return self._streams[key]

    def __getstate__(self):
        # Generators stay behind: a worker starts its own streams.
        return {**self.__dict__, "_streams": {}}

    def __repr__(self) -> str:
        return f"SeededDraws(seed={self.seed}, epoch={self.epoch})"


__all__ = ["SAMPLE_INDEX", "SeededDraws"]
