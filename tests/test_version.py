"""One version: ``fastloss.__version__``, ``build_info()["version"]`` and the installed metadata."""

import importlib.metadata
import re

import pytest

import fastloss as fl
from fastloss._version import __version__ as written


def test_one_version_in_the_package():
    assert fl.__version__ == written == fl.build_info()["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", fl.__version__)


def test_installed_metadata_agrees():
    try:
        installed = importlib.metadata.version("fastloss")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastloss is not installed (run from the source tree)")
    assert installed == fl.__version__
