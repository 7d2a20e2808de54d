"""Build hook: the cards (`targets/`, `generators/`, `defenses/` at the top of the repository, their
source of truth) are copied into the wheel as `mibench/_cards/…`, so an installed mibench lists and
resolves them from any folder. Everything else is configured in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CARD_FOLDERS = ("targets", "generators", "defenses")


class BuildWithCards(build_py):
    """build_py that also copies the card folders into the built package."""

    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "mibench" / "_cards"
        for folder in CARD_FOLDERS:
            out = dest / folder
            out.mkdir(parents=True, exist_ok=True)
            for card in sorted((root / folder).glob("*.yaml")):
                shutil.copyfile(card, out / card.name)


setup(cmdclass={"build_py": BuildWithCards})
