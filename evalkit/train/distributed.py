"""The accelerate configs evalkit ships (DDP, FSDP full shard, DeepSpeed ZeRO-3).

    accelerate launch --config_file "$(python -m evalkit.train.distributed fsdp)" -m evalkit.cli train exp.yaml

prints the path of evalkit/data/accelerate/<name>.yaml inside the installed package. Edit
num_processes (and num_machines) to the machine; the files document what they shard.
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

CONFIGS = ("ddp", "fsdp", "deepspeed_zero3")


def accelerate_config(name: str) -> Path:
    if name not in CONFIGS:
        raise ValueError(f"no accelerate config {name!r} (have: {', '.join(CONFIGS)})")
    return Path(str(resources.files("evalkit") / "data" / "accelerate" / f"{name}.yaml"))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CONFIGS:
        sys.stderr.write(f"usage: python -m evalkit.train.distributed {{{'|'.join(CONFIGS)}}}\n")
        raise SystemExit(2)
    print(accelerate_config(sys.argv[1]))
