"""The evaluation protocols of the code family (docs/sources.md#evaluation-protocol): seeds and episode counts."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class EvalProtocol:
    name: str
    seeds: tuple[int, ...]
    episodes: dict  # dataset name -> episodes per seed
    source: str


PROTOCOLS = {
    "svf-code": EvalProtocol("svf-code", (321,), {"pascal": 1000, "coco": 1000},
                             "SVF repo validate(): 1000 episodes, seed 321 reset before each validation"),
    "bam": EvalProtocol("bam", (510, 365, 382, 322, 988), {"pascal": 1000, "coco": 1000},
                        "BAM test.py: np.random.seed(123); randint(0, 1000, 5) seeds x 1000 episodes, mean"),
    "pfenet": EvalProtocol("pfenet", (321,), {"pascal": 5000, "coco": 20000},
                           "PFENet test.py: 5000 (PASCAL) / 20000 (COCO) episodes, seed 321"),
}


def protocol_runs(name: str, dataset: str, n_episodes: int | None = None) -> list[tuple[int, int]]:
    """``[(seed, episodes), ...]`` of an evaluation protocol; ``n_episodes`` overrides the count (demo scale)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    proto = PROTOCOLS[name]
    if dataset not in proto.episodes:
        raise ValueError(f"protocol {name!r} has no episode count for dataset {dataset!r}")
    n = proto.episodes[dataset] if n_episodes is None else int(n_episodes)
    if n < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes!r}")
    return [(seed, n) for seed in proto.seeds]


__all__ = ["EvalProtocol", "PROTOCOLS", "protocol_runs"]
