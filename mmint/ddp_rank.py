"""One DDP process that mmint started itself: ``python -m mmint.ddp_rank <launch file> <rank>``.

:func:`mmint.distributed.launch` starts ranks 1..n-1 with this command; each builds the same
data module and model as rank 0 from the launch file's config and trains along
(:func:`mmint.fit.train_rank`). A module of its own so that :mod:`mmint.distributed` does not
import :mod:`mmint.fit`, which imports it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from mmint.distributed import DDPPlan
from mmint.fit import train_rank


def exit_with_parent(parent: int) -> None:
    """Leave when rank 0 is gone (killed), instead of waiting in a collective for ever."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> None:
    """Train as rank ``argv[1]`` of the DDP fit described by the launch file ``argv[0]``."""
    launch_file, rank = Path(argv[0]), int(argv[1])
    payload = json.loads(launch_file.read_text())
    exit_with_parent(int(payload["parent"]))
    plan = DDPPlan(
        payload["world_size"],
        payload["find_unused_parameters"],
        payload["timeout_s"],
        rank=rank,
        port=payload["port"],
        folder=launch_file.parent,
    )
    try:
        train_rank(payload["cfg"], Path(payload["run_dir"]), plan, payload["ckpt_path"])
    except Exception as err:  # noqa: BLE001 - one line for rank 0 to report
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
