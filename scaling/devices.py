"""Where a run trains: the ``trainer`` config group and what its accelerator name implies.

:class:`TrainerConfig` is passed through to ``lightning.Trainer`` (accelerator, devices per node,
nodes, strategy) after its names are checked against what Lightning knows; :func:`device_count`
reads ``trainer.devices`` as a count. :func:`has_fused_adamw` is the one rule for which runs get
torch's fused AdamW: the config checks use it by accelerator name, ``training.module`` by the
parameters' device type (:data:`FUSED_ADAMW_DEVICES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaling.errors import ConfigError

# The torch device type each ``trainer.accelerator`` trains on (``auto``: Lightning picks one
# when the run starts, so the config cannot know it).
ACCELERATOR_DEVICES = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps", "tpu": "xla"}
ACCELERATORS = ("auto", *ACCELERATOR_DEVICES)  # what Lightning's registry knows
# The device types that torch's fused AdamW kernel supports among those this project trains on
# (torch checks it per parameter only at the first step, and lists the supported ones only in a
# private helper).
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda"})
STRATEGIES = (  # Lightning's StrategyRegistry names and "auto"
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_xla",
    "xla_debug",
    "xla",
    "single_tpu",
)


@dataclass(frozen=True)
class TrainerConfig:
    """Passed through to ``lightning.Trainer`` (multi-device runs: DDP)."""

    accelerator: str = "cpu"
    devices: Any = 1  # int, or what Lightning accepts ("auto", a list of ids)
    num_nodes: int = 1
    strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(
                f"trainer.accelerator={self.accelerator!r} is unknown: choose one of "
                f"{', '.join(ACCELERATORS)}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"trainer.strategy={self.strategy!r} is not a Lightning strategy: e.g. auto, ddp, "
                "ddp_spawn, fsdp or deepspeed (the names in Lightning's StrategyRegistry)"
            )
        if self.num_nodes < 1:
            raise ConfigError(f"trainer.num_nodes={self.num_nodes} must be at least 1")
        problem = _devices_problem(self.devices, self.accelerator)
        if problem:
            raise ConfigError(f"trainer.devices={self.devices!r} {problem}")

    @property
    def world_size(self) -> int:
        """Training processes (devices per node x nodes) as far as the config says; ``auto`` and
        ``-1`` count 1 here, and a run checks this against its Trainer before it starts
        (``training.trainer.check_world_size``)."""
        return max(1, device_count(self.devices) or 1) * max(1, self.num_nodes)


def device_count(devices: Any) -> int | None:
    """Devices per node that ``trainer.devices`` asks for: a count, the length of a list of ids
    (``[0, 1]`` or ``"0,1"``), or None for ``auto`` / ``-1`` (what the machine has)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 1 else None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip().strip("[]")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or not all(p.lstrip("-").isdigit() for p in parts):
            return None
        if len(parts) == 1 and "," not in text:
            return int(parts[0]) if int(parts[0]) >= 1 else None
        return len(parts)
    return None


def _devices_problem(devices: Any, accelerator: str) -> str | None:
    """What is wrong with a ``trainer.devices`` value as Lightning reads it, or None.

    Lightning takes a count (``2``; ``-1`` = every GPU), ``"auto"``, or GPU ids (``[0, 1]`` or
    ``"0,1"``); on the CPU only a count of processes.
    """
    how = (
        "must be a number of processes > 0 on trainer.accelerator=cpu (e.g. trainer.devices=2)"
        if accelerator == "cpu"
        else "must be a device count (2; -1 = all), auto, or a list of device ids ([0,1])"
    )
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return None
        parts = [p.strip() for p in text.strip("[]").split(",")]
        if not all(p.lstrip("-").isdigit() for p in parts):
            return how
        if len(parts) == 1:
            devices = int(parts[0])
        else:
            devices = [int(p) for p in parts]
    if isinstance(devices, bool):
        return how
    if isinstance(devices, int):
        if devices >= 1 or (devices == -1 and accelerator != "cpu"):
            return None
        return how
    if isinstance(devices, (list, tuple)) and accelerator != "cpu":
        ids = list(devices)
        if ids and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            if len(set(ids)) == len(ids):
                return None
            return "lists a device twice: give each id once"
    return how


def has_fused_adamw(accelerator: str) -> bool:
    """Whether a run on ``trainer.accelerator`` gets torch's fused AdamW
    (``training.module.build_optimizer``): its device type has the kernel. ``auto`` counts as
    fused, so a setting the fused optimizer refuses is refused before the run starts."""
    device = ACCELERATOR_DEVICES.get(accelerator)
    return device is None or device in FUSED_ADAMW_DEVICES
