"""Build step: generates the protobuf and gRPC stubs from the repository's proto/ at build time.

`pip install ./clients/python` and `pip install -e ./clients/python` both run `egg_info` and
`build_py`, which run `grpc_tools.protoc` on ../../proto/coalition/v1/*.proto (or $COALITION_PROTO_DIR) into
coalition_hub/_proto/ (git-ignored), rewriting the generated absolute imports
(`from coalition.v1 import ...`) to point inside the package. Everything else is in
pyproject.toml.
"""

from __future__ import annotations

import glob
import os
import re

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "coalition_hub", "_proto")


def proto_dir() -> str:
    """Where the .proto files are: $COALITION_PROTO_DIR or the repository's proto/."""
    return os.environ.get("COALITION_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")


def generate() -> None:
    """Runs protoc (from grpcio-tools) and fixes the generated imports."""
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    src = proto_dir()
    protos = sorted(glob.glob(os.path.join(src, "coalition", "v1", "*.proto")))
    if not protos:
        if os.path.exists(os.path.join(OUT, "coalition", "v1", "hub_pb2.py")):
            return  # an sdist or a tree generated before: nothing to compile from
        raise SystemExit(f"no .proto files under {src}: set COALITION_PROTO_DIR")
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    v1 = os.path.join(OUT, "coalition", "v1")
    os.makedirs(v1, exist_ok=True)
    args = [
        "protoc",
        "-I" + src,
        "-I" + well_known,
        "--python_out=" + OUT,
        "--pyi_out=" + OUT,
        "--grpc_python_out=" + OUT,
    ]
    if protoc.main(args + protos) != 0:
        raise SystemExit("protoc failed on " + " ".join(protos))
    for d in (OUT, os.path.join(OUT, "coalition"), v1):
        init = os.path.join(d, "__init__.py")
        if not os.path.exists(init):
            with open(init, "w", encoding="utf-8") as f:
                f.write('"""Generated at build time from proto/ (setup.py); not committed."""\n')
    pattern = re.compile(r"^from coalition\.v1 import", re.M)
    for path in glob.glob(os.path.join(v1, "*.py")) + glob.glob(os.path.join(v1, "*.pyi")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        fixed = pattern.sub("from coalition_hub._proto.coalition.v1 import", text)
        if fixed != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(fixed)


class BuildPyWithProtos(build_py):
    """build_py that first generates the stubs into the source package."""

    def run(self) -> None:
        generate()
        super().run()


class EggInfoWithProtos(egg_info):
    """egg_info (metadata, which lists the packages) after generating the stub packages."""

    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos, "egg_info": EggInfoWithProtos})
