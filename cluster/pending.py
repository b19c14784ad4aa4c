"""The off-policy loop's rollout in flight at a checkpoint, saved beside it.

In off-policy mode the rollout of step s+1 is made (by the weights one update behind) while step s trains, so at
the checkpoint of step s it already exists and no later weights can make it again. Saved with the checkpoint, it
lets a resumed run train step s+1 on the very rollout the straight run trained on, instead of a new one made by
the resumed (newer) weights.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from core.records import RolloutGroup


def pending_name(step: int) -> str:
    """The file name of the rollout of ``step`` (the step after the checkpoint's)."""
    return f"pending_rollout_step_{step:06d}.pkl"


def save_pending(path: Path, groups: list[RolloutGroup]) -> None:
    """Write atomically (a half-written file never has the final name)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(pickle.dumps(groups, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)


def load_pending(path: Path) -> list[RolloutGroup]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the checkpoint's off-policy rollout of the next step was not "
            f"saved with it; resume from a complete checkpoint directory"
        )
    return pickle.loads(path.read_bytes())
