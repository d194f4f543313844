"""The package list, found rather than listed, so a new subpackage of vlground/ installs without an
edit here; cli/ is the package vlground.cli (package-dir in pyproject.toml), which find_packages
cannot see under that name. Everything else is in pyproject.toml."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["vlground", "vlground.*"]), "vlground.cli"])
