"""PPO in several processes (`accelerate launch`, one process per GPU, or gloo on a CPU): who plays, scores
and trains which part of an update.

The split keeps a W-process run equal to a one-process run:
- episodes are played in groups of `generation_batch_size` with per-group seeds, group g by process g mod W,
  and every process receives every group's turns, so the rollout is the one-process rollout;
- the buffer is scored in the one-process minibatches (minibatch k by process k mod W), so old log-probs,
  values and the advantages normalised over the whole update are the one-process ones;
- one optimizer step takes `gradient_accumulation_steps` x W minibatches of the one-process order,
  minibatch i of the step by process i mod W, gradients averaged across processes.
So W processes train as one process with `gradient_accumulation_steps` x W does (the documented batch split:
`minibatch_size` and `gradient_accumulation_steps` count per process, as in TRL), up to the order of
floating-point sums. The DeepSpeed config a run hands to accelerate comes from `sftrl.ds_config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """The processes of one run: this one's rank and how many there are (1 without torch.distributed)."""

    rank: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> Processes:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> list[int]:
        """This process's share of n items: item i goes to process i mod count."""
        return list(range(self.rank, n, self.count))

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order (picklable objects; tensors should be on the CPU)."""
        if self.count == 1:
            return [obj]
        out = [None] * self.count
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """The main process's `obj` in every process."""
        if self.count == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.count > 1:
            dist.barrier()


def launched_processes(environ=os.environ) -> int:
    """How many processes `accelerate launch` (torchrun) started for this run; 1 under plain python."""
    return int(environ.get("WORLD_SIZE", "1"))


def to_cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().cpu() for t in tensors]
