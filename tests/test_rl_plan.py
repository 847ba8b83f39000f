"""`prime-rl plan`: parameter counts by hand, activation bytes against what autograd really saves,
backends from accelerate configs and the launcher's environment, the 7B verdicts, bad inputs as one
line, and `prime-rl train`'s start-up check (before any weight loads)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from primekit import toy
from primekit.cli import dispatch
from primekit.errors import InputError
from primekit.paths import REPO_ROOT
from primekit.rl.config import PrimeConfig
from primekit.rl.plan import formulas, launcher, memory, shapes
from rl_support import write_cli_recipe

ACCELERATE = REPO_ROOT / "recipes" / "accelerate"
RECIPE_7B = REPO_ROOT / "recipes" / "eurus_2_7b_prime.yaml"
CPU = {"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": "none", "per_device_train_batch_size": 8}
# Qwen2.5-Math-7B's config.json (the architecture of Eurus-2-7B-SFT)
QWEN25_MATH_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                  "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                  "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 4096,
                  "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "dtype": "bfloat16"}
FP32 = formulas.Precision(trained=4, frozen=4, residual=4, compute=4, autocast_copies=False, label="fp32")
AUTOCAST = formulas.Precision(trained=4, frozen=4, residual=4, compute=2, autocast_copies=True, label="autocast")
BF16 = formulas.Precision(trained=4, frozen=2, residual=2, compute=2, autocast_copies=False, label="bf16")


@pytest.fixture(scope="module")
def qwen_7b(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("qwen2.5-math-7b")
    (folder / "config.json").write_text(json.dumps(QWEN25_MATH_7B))
    return str(folder)


@pytest.fixture(scope="module")
def toy_shape(tmp_path_factory) -> shapes.ModelShape:
    folder = tmp_path_factory.mktemp("toy-config")
    toy.tiny_qwen2_config().save_pretrained(folder)
    return shapes.read_model_shape(str(folder))


# ----------------------------------------------------------------------------------------------
# sizes

def test_toy_parameters_by_hand(toy_shape):
    # h 128, 2 layers, 4 heads = 4 KV heads, MLP 512, vocabulary 26, tied embeddings
    layer = 3 * (128 * 128 + 128) + 128 * 128 + 3 * 128 * 512 + 2 * 128  # q, k, v (+bias), o, MLP, 2 norms
    assert toy_shape.layer_parameters == layer == 262_784
    assert toy_shape.parameters == 2 * layer + 26 * 128 + 128 == 529_024  # + embedding (= head) + final norm
    assert toy_shape.tied_embeddings and toy_shape.head_parameters == 26 * 128


def test_qwen25_math_7b_parameters_by_hand(qwen_7b):
    shape = shapes.read_model_shape(qwen_7b)  # config.json only: there are no weights in the folder
    kv = 4 * 128
    layer = (3584 * 3584 + 3584) + 2 * (3584 * kv + kv) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
    assert shape.layer_parameters == layer == 233_057_792
    assert shape.parameters == 28 * layer + 2 * 152064 * 3584 + 3584 == 7_615_616_512
    assert not shape.tied_embeddings and (shape.kv_width, shape.attention_width) == (512, 3584)
    assert shape.config_dtype_bytes == 2


def _saved_bytes(layers: int, rows: int, sequence: int, precision: formulas.Precision, checkpointing: bool) -> int:
    """Bytes autograd keeps for backward after a forward of a real Qwen2 (each storage counted once,
    parameters excluded)."""
    config = Qwen2Config(vocab_size=64, hidden_size=64, num_hidden_layers=layers, num_attention_heads=8,
                         num_key_value_heads=2, intermediate_size=176, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    if precision is BF16:
        model = model.to(torch.bfloat16)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, 64, (rows, sequence))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision is AUTOCAST)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        model.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return sum(saved.values())


@pytest.mark.parametrize("precision", [FP32, AUTOCAST, BF16], ids=lambda p: p.label)
@pytest.mark.parametrize("checkpointing", [False, True], ids=["saved", "checkpointed"])
def test_layer_activation_bytes_are_what_autograd_saves(precision, checkpointing):
    # one layer's bytes per row: differences over layers (1 vs 3) and rows (2 vs 4) cancel what lies
    # outside the layers and what does not grow with the batch (autocast's cached weight casts)
    def layer_delta(rows: int) -> int:
        return (_saved_bytes(3, rows, 32, precision, checkpointing) - _saved_bytes(1, rows, 32, precision, checkpointing)) // 2

    measured = layer_delta(4) - layer_delta(2)  # two more rows of 32 tokens, one layer
    shape = shapes.ModelShape("probe", 0, 0, 64 * 64, False, 1, 64, 176, 8, 2, 8, 64, 4)
    formula = (formulas.checkpointed_layer_bytes if checkpointing else formulas.decoder_layer_activation_bytes)
    assert measured == formula(shape, 2 * 32, precision)


def test_kv_cache_and_adamw_by_hand(qwen_7b):
    shape = shapes.read_model_shape(qwen_7b)
    # 2 rows of 4096 tokens, 28 layers, 4 KV heads x 128, keys and values in bf16: 2 x 28 x 512 x 2 B per token
    assert formulas.kv_cache_bytes(shape, 2, 4096, BF16) == 2 * 4096 * 28 * 512 * 2 * 2
    assert formulas.adamw_state_bytes(shape.parameters, 4) == 8 * 7_615_616_512


# ----------------------------------------------------------------------------------------------
# backends and precision

def test_backends_of_the_shipped_accelerate_configs():
    fsdp = launcher.backend_from_accelerate_config(str(ACCELERATE / "fsdp2_8gpu.yaml"))
    offload = launcher.backend_from_accelerate_config(str(ACCELERATE / "fsdp2_offload_8gpu.yaml"))
    ddp = launcher.backend_from_accelerate_config(str(ACCELERATE / "multi_gpu_8.yaml"))
    assert (fsdp.name, fsdp.gpus, fsdp.shards, fsdp.mixed_precision) == ("fsdp2", 8, 8, "bf16")
    assert (offload.name, offload.shards) == ("fsdp2_offload", 8)
    assert (ddp.name, ddp.gpus, ddp.shards) == ("ddp", 8, 1)
    assert launcher.backend_from_accelerate_config(str(ACCELERATE / "fsdp2_8gpu.yaml"), gpus=16, nodes=2).gpus_per_node == 8


def test_unplanned_accelerate_configs_are_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match=r"deepspeed_zero3.yaml:\d+: field 'distributed_type'"):
        launcher.backend_from_accelerate_config(str(ACCELERATE / "deepspeed_zero3.yaml"))
    fsdp1 = tmp_path / "fsdp1.yaml"
    fsdp1.write_text("distributed_type: FSDP\nnum_processes: 8\nfsdp_config:\n  fsdp_version: 1\n")
    with pytest.raises(InputError, match=r"fsdp1.yaml:4: field 'fsdp_config.fsdp_version'"):
        launcher.backend_from_accelerate_config(str(fsdp1))


def test_backend_from_the_launchers_environment():
    fsdp = launcher.backend_from_environment({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "ACCELERATE_USE_FSDP": "true",
                                            "FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"})
    assert (fsdp.name, fsdp.gpus, fsdp.nodes) == ("fsdp2_offload", 16, 2)
    assert launcher.backend_from_environment({}).name == "ddp"
    assert launcher.backend_from_environment({"ACCELERATE_USE_DEEPSPEED": "true"}) is None
    assert launcher.backend_from_environment({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}) is None


def test_precision_follows_trainer_and_accelerate(toy_shape):
    fsdp, ddp = launcher.backend_from_name("fsdp2", 8), launcher.backend_from_name("ddp", 8)
    fp32_load = {**CPU, "bf16": True, "model_init_kwargs": {"dtype": "float32"}}
    mixed = memory.precision_for(PrimeConfig(**fp32_load), fsdp, toy_shape)
    assert (mixed.trained, mixed.frozen, mixed.residual, mixed.compute, mixed.autocast_copies) == (4, 4, 2, 2, False)
    autocast = memory.precision_for(PrimeConfig(**fp32_load), ddp, toy_shape)
    assert (autocast.trained, autocast.residual, autocast.compute, autocast.autocast_copies) == (4, 4, 2, True)
    # bf16 weights under DDP: no master copy (the plan says so); accelerate's FSDP2 upcasts them to fp32
    bf16_load = {**CPU, "bf16": True, "model_init_kwargs": {"dtype": "bfloat16"}}
    assert memory.precision_for(PrimeConfig(**bf16_load), ddp, toy_shape).trained == 2
    assert memory.precision_for(PrimeConfig(**bf16_load), fsdp, toy_shape).trained == 4
    assert memory.precision_for(PrimeConfig(**CPU), ddp, toy_shape).compute == 4  # TRL loads fp32 by default


# ----------------------------------------------------------------------------------------------
# which models, and the totals

@pytest.mark.parametrize("overrides, expected", [
    ({}, [("policy", True), ("PRM", True), ("PRM reference", False)]),
    ({"beta": 0.01}, [("policy", True), ("KL reference", False), ("PRM", True)]),  # PRM reference = KL reference
    ({"beta": 0.01, "temperature": 0.9}, [("policy", True), ("KL reference", False), ("PRM", True),
                                         ("PRM reference", False)]),
    ({"prm_update": "none"}, [("policy", True), ("PRM", False), ("PRM reference", False)]),
    ({"process_reward_coef": 0.0}, [("policy", True)]),
])
def test_models_the_trainer_holds(toy_shape, overrides, expected):
    models = memory.model_roles(PrimeConfig(**CPU, **overrides), "toy", {"toy": toy_shape}, gpus=1)
    assert [(m.role, m.trained) for m in models] == expected


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {"gradient_checkpointing": True},
    {"gradient_checkpointing": True, "prm_update": "none"},
    {"beta": 0.01},
    {"beta": 0.01, "temperature": 0.9},
    {"process_reward_coef": 0.0},
], ids=["checkpointed", "frozen-prm", "kl-shared", "kl-separate", "outcome-only"])
def test_models_match_what_the_trainer_loads(tmp_path, overrides):
    from rl_support import build_trainer, save_tiny_policy

    policy = save_tiny_policy(tmp_path / "policy")
    trainer = build_trainer(policy, ["1000", "0110"], tmp_path / "run", **overrides)
    trainer.train()  # one step: the Trainer creates the policy's optimizer and checkpointing here
    shape = {policy: shapes.read_model_shape(policy)}
    planned = {m.role: m for m in memory.model_roles(trainer.args, policy, shape, gpus=1)}
    loaded = {"policy": trainer.model, "KL reference": trainer.ref_model, "PRM": trainer.prm,
              "PRM reference": None if trainer._prm_ref_is_kl_ref else trainer.prm_ref}
    assert set(planned) == {role for role, model in loaded.items() if model is not None}
    optimized = {id(p) for optimizer in (trainer.optimizer, trainer.prm_optimizer) if optimizer is not None
                 for group in optimizer.param_groups for p in group["params"]}
    for role, model in planned.items():
        module = trainer.accelerator.unwrap_model(loaded[role])
        assert model.trained == any(id(p) in optimized for p in module.parameters()), role
        assert model.checkpointing == bool(getattr(module, "is_gradient_checkpointing", False)), role


def _plan(shape: shapes.ModelShape, backend: launcher.Backend, **overrides) -> memory.MemoryPlan:
    config = PrimeConfig(**CPU, **overrides)
    models = memory.model_roles(config, "toy", {"toy": shape}, backend.gpus)
    precision = memory.precision_for(config, backend, shape)
    return memory.build_plan(models, backend, precision, memory.workload_for(config, 11, on_gpu=False), 64 * formulas.GIB)


def test_resident_memory_by_hand(toy_shape):
    params = toy_shape.parameters

    def resident(plan: memory.MemoryPlan) -> float:
        return sum(item.device for item in plan.items if item.phases == memory.RESIDENT)

    # fp32: 3 x weights + 2 x AdamW moments; DDP over 2 processes adds a bucket per trained model
    assert resident(_plan(toy_shape, launcher.backend_from_name("ddp", 1))) == (3 * 4 + 2 * 8) * params
    assert resident(_plan(toy_shape, launcher.backend_from_name("ddp", 2))) == (3 * 4 + 2 * 8 + 2 * 4) * params
    assert resident(_plan(toy_shape, launcher.backend_from_name("fsdp2", 4))) == (3 * 4 + 2 * 8) * params / 4
    offload = _plan(toy_shape, launcher.backend_from_name("fsdp2_offload", 4))
    assert resident(offload) == 0 and offload.host_per_node == 4 * (3 * 4 + 2 * 8 + 2 * 4) * params / 4
    outcome = _plan(toy_shape, launcher.backend_from_name("ddp", 1), process_reward_coef=0.0)
    assert resident(outcome) == (4 + 8) * params


def test_peak_is_the_largest_phase_and_gradients_do_not_coexist(toy_shape):
    plan = _plan(toy_shape, launcher.backend_from_name("ddp", 1))
    assert plan.peak == max(plan.phase_total(phase) for phase in plan.phases)
    step = plan.phase_total("policy step")
    resident = sum(item.device for item in plan.items if item.phases == memory.RESIDENT)
    assert step == resident + toy_shape.parameters * 4  # the policy's gradients only, not the PRM's


# ----------------------------------------------------------------------------------------------
# the command

def _plan_7b(qwen_7b: str, *options: str) -> memory.MemoryPlan:
    from primekit.rl.commands import plan_from_args

    return plan_from_args(["--config", str(RECIPE_7B), *_local_7b(qwen_7b), *options])[0]


def _local_7b(qwen_7b: str) -> list[str]:
    """The recipe's policy, PRM and PRM reference (all Eurus-2-7B-SFT) as the local 7B config.json."""
    return ["--model", qwen_7b, "--prm", qwen_7b, "--prm_ref", qwen_7b]


def test_shipped_7b_recipe_fits_8x80gb_with_fsdp2_offload_and_not_with_ddp(qwen_7b, capsys):
    # the recipe as shipped: the official run's batch (1024 responses per rollout, 1 per GPU and
    # micro-step), prompt cap 1024 + 3072, checkpointing, fp32 master / bf16 compute, vLLM at 0.7
    common = ["plan", "--config", str(RECIPE_7B), *_local_7b(qwen_7b), "--gpus", "8", "--gpu_memory_gb", "80"]
    assert dispatch("prime-rl", [*common, "--parallelism", "ddp"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
    assert dispatch("prime-rl", [*common, "--accelerate_config", str(ACCELERATE / "fsdp2_offload_8gpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "FITS" in out and "CPU memory of the offloaded states" in out
    offload = _plan_7b(qwen_7b, "--accelerate_config", str(ACCELERATE / "fsdp2_offload_8gpu.yaml"))
    assert offload.fits and offload.margin >= 0.10 and offload.backend.gpus == 8
    assert (offload.precision.trained, offload.workload.sequence, offload.workload.generation_rows) == (4, 4096, 128)
    ddp = _plan_7b(qwen_7b, "--parallelism", "ddp", "--gpus", "8")
    assert not ddp.fits and ddp.largest.kind in ("weights", "optimizer", "DDP buckets", "autocast weight copies")


def test_fsdp2_without_offload_fits_when_vllm_leaves_room(qwen_7b):
    # without offload the sharded states stay on the GPU while vLLM wakes up for generation
    fsdp = _plan_7b(qwen_7b, "--parallelism", "fsdp2", "--gpus", "8")
    resident = sum(item.device for item in fsdp.items if item.phases == memory.RESIDENT)
    assert fsdp.peak_phase == "generation" and fsdp.peak == pytest.approx(resident + 0.7 * fsdp.capacity)
    assert fsdp.capacity == pytest.approx(79.2 * formulas.GIB)  # the usable share of the nominal 80 GiB
    smaller = _plan_7b(qwen_7b, "--parallelism", "fsdp2", "--gpus", "8", "--vllm_gpu_memory_utilization", "0.5")
    assert smaller.fits and smaller.margin >= 0.10


def test_backend_is_a_deprecated_alias_of_parallelism(qwen_7b, tmp_path, capsys):
    # `--backend` names the generation backend in the other tools; the planner's option is --parallelism
    current = _plan_7b(qwen_7b, "--parallelism", "fsdp2", "--gpus", "8")
    capsys.readouterr()
    old = _plan_7b(qwen_7b, "--backend", "fsdp2", "--gpus", "8")
    assert "'--backend' (command-line option) is deprecated" in capsys.readouterr().err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE_7B.read_text(encoding="utf-8") + "\nbackend: fsdp2\n", encoding="utf-8")
    from primekit.rl.commands import plan_from_args

    in_yaml = plan_from_args(["--config", str(recipe), *_local_7b(qwen_7b), "--gpus", "8"])[0]
    assert "'backend' (key in" in capsys.readouterr().err
    assert current.backend.name == old.backend.name == in_yaml.backend.name == "fsdp2"
    assert current.peak == old.peak == in_yaml.peak


@pytest.mark.slow
def test_plan_of_the_toy_recipe(capsys):
    assert dispatch("prime-rl", ["plan"]) == 0  # the toy recipe, as `prime-rl train` runs it
    out = capsys.readouterr().out
    assert "FITS" in out and "PRM reference" in out and "CPU process" in out


@pytest.mark.parametrize("options, message", [
    (["--parallelism", "zero3"], "parallelism must be one of ddp, fsdp2, fsdp2_offload; got 'zero3'"),
    (["--gpu_memory_gb", "0"], "gpu_memory_gb must be > 0; got 0"),
    (["--gpu_memory_gb", "-80"], "gpu_memory_gb must be > 0; got -80"),
    (["--gpus", "0"], "gpus must be >= 1"),
    (["--gpu_usable_fraction", "0"], "gpu_usable_fraction must be in (0, 1]; got 0"),
    (["--gpu_usable_fraction", "1.5"], "gpu_usable_fraction must be in (0, 1]; got 1.5"),
    (["--vllm_asleep_gb", "-1"], "vllm_asleep_gb must be >= 0; got -1"),
    (["--parallelism", "fsdp2", "--accelerate_config", str(ACCELERATE / "fsdp2_8gpu.yaml")], "not both"),
    (["--accelerate_config", str(ACCELERATE / "deepspeed_zero2.yaml")], "distributed_type DEEPSPEED is not planned"),
    (["--accelerate_config", "missing.yaml"], "missing.yaml: accelerate config file not found"),
])
def test_bad_options_are_one_line(options, message, capsys):
    assert dispatch("prime-rl", ["plan", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_config_json_is_one_line(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert dispatch("prime-rl", ["plan", "--model", str(tmp_path / "model"), "--prompt_length", "12"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'model' / 'config.json'}: no config.json" in err and err.count("\n") == 1
    assert dispatch("prime-rl", ["plan", "--model", str(tmp_path / "nowhere")]) == 2
    assert "model path does not exist" in capsys.readouterr().err


def test_longest_prompt_in_toy_tokens():
    tokenizer = toy.build_tokenizer()
    # "Compute", " ", then 3+58-19 character by character and the newline
    assert memory.longest_prompt_tokens(["Compute 3+58-19\n", "Compute 1+2\n"], tokenizer) == 10


# ----------------------------------------------------------------------------------------------
# `prime-rl train`'s start-up check

class _WeightsLoaded(Exception):
    pass


def _no_weights(*args, **kwargs):
    raise _WeightsLoaded


def test_train_refuses_a_run_that_does_not_fit_before_loading_weights(tmp_path, monkeypatch, capsys):
    import primekit.rl.trainer

    recipe = write_cli_recipe(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(primekit.rl.trainer.PrimeTrainer, "__init__", _no_weights)
    monkeypatch.setattr(memory, "environment_capacity", lambda on_gpu, processes: 2**20)  # a 1 MiB device
    assert dispatch("prime-rl", ["train", "--config", str(recipe), "--strict_memory", "true"]) == 2
    err = capsys.readouterr().err
    assert "error: the memory plan says this run does not fit" in err and err.count("\n") == 1
    with pytest.raises(_WeightsLoaded):  # without --strict_memory: a warning, then the trainer loads
        dispatch("prime-rl", ["train", "--config", str(recipe)])
    assert "warning: the memory plan says this run does not fit" in capsys.readouterr().err


def test_train_start_up_check_is_silent_when_the_run_fits(tmp_path, monkeypatch, capsys):
    import primekit.rl.trainer

    recipe = write_cli_recipe(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(primekit.rl.trainer.PrimeTrainer, "__init__", _no_weights)
    with pytest.raises(_WeightsLoaded):
        dispatch("prime-rl", ["train", "--config", str(recipe), "--strict_memory", "true"])
    assert "memory plan" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# what runs: gradients held during accumulation, CPU memory per node

def test_gradient_sync_off_holds_the_unsharded_gradient_during_accumulation(qwen_7b):
    offload = ["--accelerate_config", str(ACCELERATE / "fsdp2_offload_8gpu.yaml")]
    synced = _plan_7b(qwen_7b, *offload)
    deferred = _plan_7b(qwen_7b, *offload, "--sync_gradients_each_micro_batch", "false")
    assert not [item for item in synced.items if item.kind == "unsharded gradient"]
    held = {item.model: item for item in deferred.items if item.kind == "unsharded gradient"}
    # 7,615,616,512 parameters x 4 B (reduced and accumulated in fp32) on every GPU, offload or not
    assert held["policy"].device == 7_615_616_512 * 4 and held["policy"].phases == ("policy update",)
    assert held["PRM"].device == 7_615_616_512 * 4 and held["PRM"].phases == ("PRM update",)
    assert deferred.phase_total("policy update") - synced.phase_total("policy update") == 7_615_616_512 * 4


def test_cpu_memory_per_node_by_hand(qwen_7b):
    from primekit.rl.plan.host_memory import GIB, PROCESS_OVERHEAD_BYTES, host_memory

    plan = _plan_7b(qwen_7b, "--accelerate_config", str(ACCELERATE / "fsdp2_offload_8gpu.yaml"))
    host = host_memory(plan)
    params = 7_615_616_512
    # offloaded: policy and PRM weights + gradients + AdamW moments (4 + 4 + 8 B, fp32), the PRM reference's
    # weights (4 B: the recipe loads every model in fp32); the 8 processes' 1/8 shards make whole models
    assert host.offloaded == pytest.approx(2 * params * 16 + params * 4, rel=1e-9)
    assert (host.staging, host.staging_copies) == (params * 4, 1)  # cpu_ram_efficient_loading: rank 0 only
    assert host.overhead == 8 * PROCESS_OVERHEAD_BYTES
    assert host.fits(1000 * GIB) and not host.fits(300 * GIB)


def test_plan_on_two_nodes_prints_cpu_memory_per_node_and_a_verdict(qwen_7b, capsys):
    common = ["plan", "--config", str(RECIPE_7B), *_local_7b(qwen_7b), "--accelerate_config",
              str(ACCELERATE / "fsdp2_offload_2x8gpu.yaml"), "--prm_mini_batch_size", "256"]
    assert dispatch("prime-rl", [*common, "--cpu_memory_gb", "1000"]) == 0
    out = capsys.readouterr().out
    assert "16 GPU(s) on 2 nodes" in out and "CPU memory per node (2 node(s), 8 processes each)" in out
    assert "FITS in 1000 GiB per node" in out
    assert dispatch("prime-rl", [*common, "--cpu_memory_gb", "100"]) == 1
    assert "DOES NOT FIT in 100 GiB per node" in capsys.readouterr().out


QWEN25_32B = {**QWEN25_MATH_7B, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
              "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
              "rope_theta": 1000000.0, "rms_norm_eps": 1e-5}


def test_vllm_share_must_hold_its_weights_and_one_sequence(qwen_7b, tmp_path):
    from primekit.rl.commands import plan_from_args

    shape = shapes.read_model_shape(qwen_7b)
    # 7B: bf16 weights 15.23 GB + one 4096-token sequence of KV (28 layers x 512 x 2 x 2 B) + profiling
    kv = 4096 * 28 * 512 * 4
    profile = 4096 * (2 * 2 * 3584 + 8 * 3584 + 3 * 2 * 18944) + 4096 * 152064 * 4
    assert formulas.vllm_minimum_bytes(shape, 4096) == 7_615_616_512 * 2 + kv + profile
    assert formulas.vllm_minimum_bytes(shape, 4096, tensor_parallel=2) == (7_615_616_512 * 2 + kv + profile) / 2
    folder = tmp_path / "qwen2.5-32b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN25_32B))
    models = ["--model", str(folder), "--prm", str(folder), "--prm_ref", str(folder)]
    offload = ["--accelerate_config", str(ACCELERATE / "fsdp2_offload_2x8gpu.yaml")]
    tp1 = plan_from_args(["--config", str(RECIPE_7B), *models, *offload])[0]
    assert tp1.peak <= tp1.capacity and tp1.vllm_share_too_small and not tp1.fits  # 61 GiB of weights in 56
    assert "vllm_gpu_memory_utilization >= 0.8" in tp1.summary()
    tp2 = plan_from_args(["--config", str(RECIPE_7B), *models, *offload, "--vllm_tensor_parallel_size", "2"])[0]
    assert tp2.fits


def test_fused_head_backward_holds_fp32_gradients_and_their_16_bit_casts():
    # vocab 1000 x hidden 64 (64,000 head parameters), 10 scored tokens; by hand from
    # trl/kernels/chunked_logprob.py's backward: fp32 grad_hidden / grad_weight, then .to(input dtype)
    shape = dict(head_parameters=64_000, scored_tokens=10, hidden_size=64)
    # bf16 head and hidden states (DDP on bf16 weights): 10*64*(4+2) + 64,000*(4+2)
    assert formulas.fused_head_gradient_bytes(**shape, hidden_bytes=2, weight_bytes=2, trained=True,
                                               weight_cast_counted=False) == 3_840 + 384_000
    # fp32 head (cast_lm_head_to_fp32, or fp32 weights): the casts are no-ops, 10*64*4 + 64,000*4
    assert formulas.fused_head_gradient_bytes(**shape, hidden_bytes=4, weight_bytes=4, trained=True,
                                               weight_cast_counted=False) == 2_560 + 256_000
    # FSDP2: the weight's bf16 cast is the unsharded gradient the gathered units already count
    assert formulas.fused_head_gradient_bytes(**shape, hidden_bytes=2, weight_bytes=2, trained=True,
                                               weight_cast_counted=True) == 3_840 + 256_000
    # a frozen model's head runs without autograd
    assert formulas.fused_head_gradient_bytes(**shape, hidden_bytes=2, weight_bytes=2, trained=False,
                                               weight_cast_counted=False) == 0


def test_lm_head_item_charges_the_weight_gradient_cast_where_nothing_else_does(toy_shape):
    bf16_weights = formulas.Precision(trained=2, frozen=2, residual=2, compute=2, autocast_copies=False, label="bf16")
    ddp = formulas.lm_head_bytes(toy_shape, 100, bf16_weights, trained=True, fp32_head=False)
    fsdp = formulas.lm_head_bytes(toy_shape, 100, bf16_weights, trained=True, fp32_head=False, fsdp=True)
    assert ddp - fsdp == 2 * toy_shape.head_parameters  # the bf16 copy of the fp32 weight gradient
    fp32_head = formulas.lm_head_bytes(toy_shape, 100, bf16_weights, trained=True, fp32_head=True)
    frozen = formulas.lm_head_bytes(toy_shape, 100, bf16_weights, trained=False, fp32_head=True)
    assert fp32_head - frozen == 4 * toy_shape.head_parameters + 4 * 100 * toy_shape.hidden_size  # no casts


def test_verdict_is_against_usable_gpu_memory(qwen_7b):
    assert formulas.usable_gpu_bytes(80) == pytest.approx(79.2 * 2**30)
    fsdp = ["--accelerate_config", str(ACCELERATE / "fsdp2_8gpu.yaml")]
    usable, nominal = _plan_7b(qwen_7b, *fsdp), _plan_7b(qwen_7b, *fsdp, "--gpu_usable_fraction", "1")
    assert (usable.capacity, nominal.capacity) == (pytest.approx(79.2 * formulas.GIB), 80 * formulas.GIB)
    # vLLM takes its share of the usable memory too; pick a share that fits 80 GiB but not 79.2
    resident = usable.peak - 0.7 * usable.capacity
    share = (1 - resident / usable.capacity + 1 - resident / nominal.capacity) / 2
    between = [*fsdp, "--vllm_gpu_memory_utilization", f"{share:.5f}"]
    assert _plan_7b(qwen_7b, *between, "--gpu_usable_fraction", "1").fits
    assert not _plan_7b(qwen_7b, *between).fits


def test_sleeping_vllm_keeps_its_residue_outside_generation(qwen_7b):
    fsdp = ["--accelerate_config", str(ACCELERATE / "fsdp2_8gpu.yaml")]
    asleep, none = _plan_7b(qwen_7b, *fsdp), _plan_7b(qwen_7b, *fsdp, "--vllm_asleep_gb", "0")
    residue = [item for item in asleep.items if item.kind == "asleep residue"]
    assert len(residue) == 1 and residue[0].device == 1 * formulas.GIB and "generation" not in residue[0].phases
    assert not any(item.kind == "asleep residue" for item in none.items)
    for phase in memory.PHASES:
        extra = 0 if phase == "generation" else formulas.GIB
        assert asleep.phase_total(phase) - none.phase_total(phase) == pytest.approx(extra)
    awake = _plan_7b(qwen_7b, *fsdp, "--vllm_enable_sleep_mode", "false")  # its whole share stays instead
    assert not any(item.kind == "asleep residue" for item in awake.items)
    assert [item.phases for item in awake.items if item.kind == "colocated engine"] == [memory.RESIDENT]
