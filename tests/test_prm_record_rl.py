"""A PRM saved by the PRIME online trainer reads with its folder alone: the trainer writes the same
``implicit_prm.json`` record as ``prime-prm train``."""

from __future__ import annotations

import json

import pytest
import torch

from primekit.prm.implicit import ImplicitPRM
from primekit.rl.checkpoint import PRM_DIR
from rl_support import build_trainer, first_batch, save_tiny_policy


def test_online_prm_loads_with_its_path_alone(tmp_path):
    policy = save_tiny_policy(tmp_path / "policy")
    trainer = build_trainer(policy, ["1000", "1100"], tmp_path / "run", prm_beta=0.1)
    output = first_batch(trainer)  # one PRM update: the PRM now differs from its reference
    trainer.save_model(str(tmp_path / "run"))
    folder = tmp_path / "run" / PRM_DIR
    record = json.loads((folder / "implicit_prm.json").read_text())
    assert record == {"base": policy, "reference": policy, "beta": 0.1, "coef": 0.1, "step_mode": "auto",
                      "append_eos": True, "read_out": "steps"}

    reader = ImplicitPRM.from_pretrained(folder, device="cpu")
    assert reader.coef == 0.1
    # the loaded PRM reads what the trainer's PRM read: r = beta * q on the same tokens
    with torch.no_grad():
        q = trainer._completion_logps(trainer.prm, output) - trainer._completion_logps(trainer.prm_ref, output)
    prompts = trainer.processing_class.batch_decode(output["prompt_ids"], skip_special_tokens=True)
    mask = output["completion_mask"].bool()
    responses = [trainer.processing_class.decode(ids[row_mask]) for ids, row_mask in zip(output["completion_ids"], mask)]
    reader.append_eos = False  # the completion ids already end with the EOS they were sampled with
    for row, rewards in enumerate(reader.token_rewards(prompts, responses)):
        assert rewards.tolist() == pytest.approx((0.1 * q[row][mask[row]]).tolist(), abs=1e-5)
    assert float(q.abs().max()) > 1e-4
