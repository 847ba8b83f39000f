"""Build hook: ship the repository's ``recipes/`` folder inside the package as ``primekit/recipes``.

The folder stays at the repository root (the README's ``--config recipes/...`` commands, and
``accelerate launch --config_file recipes/accelerate/...``); a wheel carries a copy, so an
installed ``prime-rl train`` finds its default recipe (``primekit.paths.recipes_dir``).
Metadata and dependencies are in setup.cfg.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RECIPES = Path(__file__).resolve().parent / "recipes"


class BuildWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "primekit" / "recipes"
        for recipe in sorted(RECIPES.rglob("*.yaml")):
            destination = target / recipe.relative_to(RECIPES)
            self.mkpath(str(destination.parent))
            self.copy_file(str(recipe), str(destination))


setup(cmdclass={"build_py": BuildWithRecipes})
