"""The training sampler: reshuffled passes over the training cells, per cell or in blocks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

#: blocks whose cells are shuffled together under block shuffling (backed reading)
FETCH_BLOCKS = 16


class ShuffledBatches(Sampler[tuple[int, list[int]]]):
    """``passes`` reshuffled passes over ``cells`` per epoch, seeded by (seed, epoch).

    Yields ``(pass index, cells)``: every training batch says which pass it belongs to.

    With ``world_size > 1`` (DDP) every pass is dealt round-robin over the processes after
    dropping at most ``world_size - 1`` cells, so that every process gets the same number of
    equally sized batches (a process with one batch more would wait forever in the gradient
    all-reduce). Lightning calls :meth:`set_epoch` before every epoch, which also makes a
    resumed fit draw the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        cells: np.ndarray,
        batch_size: int,
        seed: int,
        passes: int = 1,
        rank: int = 0,
        world_size: int = 1,
        block: int = 1,
    ) -> None:
        self.cells, self.batch_size, self.seed, self.passes = cells, batch_size, seed, passes
        self.rank, self.world_size = rank, max(1, world_size)
        self.block = max(1, int(block))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffles of ``epoch`` on the next iteration."""
        self.epoch = int(epoch)

    def _per_process(self) -> int:
        """Cells per process and pass."""
        return len(self.cells) // self.world_size

    def _permutation(self, rng: np.random.Generator) -> np.ndarray:
        """A shuffle of the cells; with ``block > 1`` a block shuffle: the cells are cut into
        blocks of ``block`` consecutive indices (file rows), the blocks are shuffled, and the
        cells are shuffled within windows of 16 blocks (``fetch``), so that a window's blocks are
        read together and every batch still mixes 16 blocks."""
        if self.block == 1:
            return rng.permutation(self.cells)
        _, starts = np.unique(self.cells // self.block, return_index=True)
        groups = np.split(self.cells, starts[1:])
        order = rng.permutation(len(groups))
        out = []
        for i in range(0, len(order), FETCH_BLOCKS):
            window = np.concatenate([groups[k] for k in order[i : i + FETCH_BLOCKS]])
            out.append(rng.permutation(window))
        return np.concatenate(out)

    def _one_pass(self, rng: np.random.Generator) -> list[np.ndarray]:
        perm = self._permutation(rng)
        if self.world_size > 1:
            perm = perm[: self._per_process() * self.world_size][self.rank :: self.world_size]
        chunks = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
        if len(chunks) > 1 and len(chunks[-1]) < 2:  # a 1-cell batch breaks BatchNorm
            last = chunks.pop()
            chunks[-1] = np.concatenate([chunks[-1], last])
        return chunks

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for k in range(self.passes):
            for chunk in self._one_pass(rng):
                yield k, chunk.tolist()

    def __len__(self) -> int:
        n = self._per_process() if self.world_size > 1 else len(self.cells)
        per_pass = -(-n // self.batch_size)
        if per_pass > 1 and n % self.batch_size == 1:
            per_pass -= 1  # the lone last cell joins the previous batch
        return per_pass * self.passes
