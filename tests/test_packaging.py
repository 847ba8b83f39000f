"""A wheel install (not an editable checkout) has everything a user runs: the recipes ship as
package data, so `prime-rl train` finds its default recipe, and the PRIME system prompt file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from primekit.paths import REPO_ROOT, cache_dir
from primekit.verifiers.code.launch import HARNESS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, unpacked into a folder outside the repository."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(folder / "dist"), str(REPO_ROOT)], check=True,
                   timeout=300)
    (wheel,) = (folder / "dist").glob("primekit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "primekit/recipes/toy_prime.yaml" in names
    assert "primekit/recipes/accelerate/fsdp2_8gpu.yaml" in names
    assert "primekit/eval/prompts/prime_system_prompt.md" in names
    # the code sandbox's harness: a folder run as a script inside the sandbox, every module of it
    assert {f"primekit/verifiers/code/harness/{module.name}" for module in HARNESS.glob("*.py")} <= set(names)
    site = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    return site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # the toy policy is found in this checkout's cache instead of being trained again
    env = {**os.environ, "PYTHONPATH": str(site), "PRIMEKIT_CACHE": str(cache_dir())}
    code = "import sys; from primekit.cli import rl_main; sys.argv[0] = 'prime-rl'; rl_main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=540)


def test_wheel_install_runs_prime_rl_train_with_its_packaged_recipe(installed, tmp_path):
    from primekit import toy

    toy.policy_path()
    probe = subprocess.run([sys.executable, "-c", "import primekit, primekit.paths as p; "
                            "print(primekit.__file__); print(p.recipes_dir())"],
                           env={**os.environ, "PYTHONPATH": str(installed)}, cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    module_file, recipes = probe.stdout.split()
    assert module_file.startswith(str(installed)) and recipes == str(installed / "primekit" / "recipes")
    helped = run_installed(installed, tmp_path, "train", "--help")
    assert helped.returncode == 0 and "--prm_update" in helped.stdout
    done = run_installed(installed, tmp_path, "train", "--max_steps", "1", "--heldout_size", "50",
                         "--per_device_train_batch_size", "16", "--report_to", "none",
                         "--save_strategy", "no", "--output_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1
