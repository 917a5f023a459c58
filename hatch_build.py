"""Hatchling build hook: compile the optional C accelerator `wscore/_speedups.c` when possible.

The pure-Python code in `wscore/frames.py` does the same work, so a machine without a C compiler (or
a build with WSCORE_NO_EXTENSIONS=1) still gets a complete, pure-Python wheel: the hook warns and
returns. With a compiler, setuptools' build_ext (portable across gcc, clang and MSVC) builds the
module; the wheel then carries it and is tagged for this interpreter and platform.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def build_speedups(root: str, out_dir: str) -> str:
    """Compile wscore._speedups into `out_dir`; return the path of the built module."""
    from setuptools import Distribution, Extension

    ext = Extension("wscore._speedups", [os.path.join("wscore", "_speedups.c")], optional=False)
    dist = Distribution({"name": "wscore-ws", "ext_modules": [ext], "script_name": "hatch_build.py"})
    dist.src_root = root
    cmd: Any = dist.get_command_obj("build_ext")
    cmd.build_lib = out_dir
    cmd.build_temp = os.path.join(out_dir, "temp")
    cwd = os.getcwd()
    os.chdir(root)  # build_ext resolves the source path relative to the project
    try:
        cmd.ensure_finalized()
        cmd.run()
    finally:
        os.chdir(cwd)
    path: str = cmd.get_ext_fullpath(ext.name)
    return path


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[misc,unused-ignore]
    """Adds the compiled accelerator to wheels (and, for editable installs, next to the sources)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("WSCORE_NO_EXTENSIONS"):
            return
        tmp = self._tmp = tempfile.mkdtemp(prefix="wscore-build-")
        try:
            built = build_speedups(self.root, tmp)
        except Exception as exc:  # no compiler or no Python headers: ship pure Python
            self.app.display_warning(f"wscore: C accelerator not built, using pure Python ({exc})")
            shutil.rmtree(tmp, ignore_errors=True)
            return
        name = os.path.basename(built)
        if version == "editable":
            # An editable install imports from the source tree, so the module goes there (gitignored).
            # Copy beside it, then rename: overwriting a loaded shared object in place crashes the
            # processes that have it mapped, while a rename leaves them the old file.
            target = os.path.join(self.root, "wscore", name)
            staging = f"{target}.{os.getpid()}.tmp"
            shutil.copy2(built, staging)
            os.replace(staging, target)
        else:
            build_data["force_include"][built] = f"wscore/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
