"""The project's PEP 517 build backend: setuptools' ``build_meta``, leaving the source tree as it found it.

setuptools writes its work directories into the source tree: ``build/`` (``build_py`` copies every
module and data file to ``build/lib`` before packing the wheel) and ``ser_edge.egg-info/``, and since
pip 21.3 builds in the tree instead of a temporary copy, ``pip install .`` and ``python -m build``
leave both behind (pypa/setuptools#4198, #3236). Worse, a ``build/lib`` from an earlier build keeps
files deleted since, e.g. a renamed model, and puts them in the next wheel.

So every hook here is setuptools' own, run with both directories removed before (no stale files can
reach the wheel) and after (nothing left in the tree). Nothing else changes: the metadata, the
wheel's contents and the editable install are setuptools'.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools

#: setuptools' work directories, relative to the source tree (the working directory of every hook).
WORK_DIRECTORIES = ("build", "ser_edge.egg-info")


def _remove_work_directories() -> None:
    for name in WORK_DIRECTORIES:
        shutil.rmtree(Path(name), ignore_errors=True)


def _in_a_clean_tree(hook):
    @functools.wraps(hook)
    def run(*args, **kwargs):
        _remove_work_directories()
        try:
            return hook(*args, **kwargs)
        finally:
            _remove_work_directories()

    return run


get_requires_for_build_wheel = _in_a_clean_tree(_setuptools.get_requires_for_build_wheel)
get_requires_for_build_sdist = _in_a_clean_tree(_setuptools.get_requires_for_build_sdist)
get_requires_for_build_editable = _in_a_clean_tree(_setuptools.get_requires_for_build_editable)
prepare_metadata_for_build_wheel = _in_a_clean_tree(_setuptools.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _in_a_clean_tree(_setuptools.prepare_metadata_for_build_editable)
build_wheel = _in_a_clean_tree(_setuptools.build_wheel)
build_sdist = _in_a_clean_tree(_setuptools.build_sdist)
build_editable = _in_a_clean_tree(_setuptools.build_editable)
