"""What a PRIME checkpoint holds beyond TRL's: the PRM as a loadable model, its optimizer state
(sharded like the optimizer, so FSDP2 ranks write and read only their own shards) and the official
epoch's position; written with TRL's checkpoint and restored by its resume hook."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from trl.trainer.utils import get_config_model_id

from primekit.errors import InputError
from primekit.io import atomic_write_json
from primekit.prm.reading import write_prm_record

__all__ = ["EPOCH_STATE_FILE", "PRM_DIR", "PRM_OPTIMIZER_DIR", "PrmCheckpointMixin", "read_safetensors"]

#: Sub-folder of a checkpoint (and of the final output) holding the PRM as a loadable model.
PRM_DIR = "prm"
#: The PRM's optimizer state inside a checkpoint folder (a torch.distributed.checkpoint folder,
#: sharded like the optimizer itself, so FSDP2 ranks write and read only their own shards).
PRM_OPTIMIZER_DIR = "prm_optimizer"
#: Where a checkpoint keeps the official epoch's position (loader cursor, buffered prompts).
EPOCH_STATE_FILE = "prime_epoch.json"


class PrmCheckpointMixin:
    """PrimeTrainer's checkpoint hooks (a mixin of a ``GRPOTrainer`` subclass): the PRM weights and
    optimizer and the official epoch's position travel with TRL's checkpoint."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """TRL's save, plus the PRM as a loadable model in ``<output_dir>/prm``. Every process
        takes part: under FSDP2 the full weights are gathered from the shards first."""
        super().save_model(output_dir, _internal_call)
        if self.prm is not None:
            self._save_prm(Path(output_dir or self.args.output_dir) / PRM_DIR)

    def _full_prm_state(self) -> dict[str, torch.Tensor]:
        """The PRM's full weights on the main process (gathered to CPU under FSDP2); {} elsewhere."""
        if self.accelerator.is_fsdp2:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(self.prm, options=options)
        model = self.accelerator.unwrap_model(self.prm)
        return model.state_dict() if self.accelerator.is_main_process else {}

    def _save_prm(self, target: Path) -> None:
        """Write to a temporary folder and rename it into place, so a kill never leaves half a PRM."""
        state = self._full_prm_state()
        if not self.args.should_save:
            return
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model = self.accelerator.unwrap_model(self.prm)
        model.save_pretrained(staging, state_dict=state)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(staging)
        policy_id = get_config_model_id(self.accelerator.unwrap_model(self.model).config)
        write_prm_record(staging, base=self.args.prm or policy_id,
                         reference=self.args.prm_ref or policy_id, beta=self.args.prm_beta)
        previous = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, previous)
        os.replace(staging, target)
        shutil.rmtree(previous, ignore_errors=True)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self._epoch is not None and self.args.should_save:
            atomic_write_json(Path(output_dir) / EPOCH_STATE_FILE, self._epoch.state_dict())
        if self.prm_optimizer is not None:  # a collective: every process writes its own shard
            state = get_optimizer_state_dict(self.prm, self.prm_optimizer)
            dcp.save({"optimizer": state}, checkpoint_id=Path(output_dir) / PRM_OPTIMIZER_DIR)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """TRL's resume hook; restores the PRM weights and optimizer written with the checkpoint."""
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self._epoch is not None and (Path(checkpoint) / EPOCH_STATE_FILE).is_file():
            self._epoch.load_state_dict(json.loads((Path(checkpoint) / EPOCH_STATE_FILE).read_text()))
            self._epoch_restored = True
        if checkpoint is None or self.prm is None:
            return
        folder = Path(checkpoint) / PRM_DIR
        if not any(folder.glob("*.safetensors")):
            raise InputError(f"{checkpoint} holds no PRM ({PRM_DIR}/*.safetensors); resume it with the "
                             "settings it was written with")
        full = read_safetensors(folder) if self.accelerator.is_main_process or not self.accelerator.is_fsdp2 else {}
        if self.accelerator.is_fsdp2:
            set_model_state_dict(self.prm, full, options=StateDictOptions(full_state_dict=True,
                                                                          broadcast_from_rank0=True, strict=False))
        else:
            model = self.accelerator.unwrap_model(self.prm)
            missing = set(model.load_state_dict(full, strict=False).missing_keys)
            if missing - tied_parameter_names(model):
                raise InputError(f"{folder} misses PRM weights: {sorted(missing)[:3]}")
        if self.prm_optimizer is not None:
            state = {"optimizer": get_optimizer_state_dict(self.prm, self.prm_optimizer)}
            dcp.load(state, checkpoint_id=Path(checkpoint) / PRM_OPTIMIZER_DIR)
            set_optimizer_state_dict(self.prm, self.prm_optimizer, state["optimizer"])


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model folder (one file or several shards)."""
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    return state


def tied_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names under which a parameter that is shared with another name is reachable (tied weights,
    which ``save_pretrained`` writes once)."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return {name for group in names.values() if len(group) > 1 for name in group}
