"""Build hook of the Shoal client: generates the `shoal.v1` modules from the protocol's .proto files.

The protocol lives once, in the repository's `proto/` folder (two levels above this file); every
build runs grpcio-tools' protoc on it, so the Python messages and stubs can never drift from what
the coordinator speaks. `SHOAL_PROTO_DIR` points the build at another folder of .proto files; an
sdist carries a copy in its own `proto/` folder.
"""

import os
import re
import shutil
from importlib import metadata
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
# Where the generated modules go, inside the package.
GENERATED = Path("shoal") / "v1"


def proto_dir() -> Path:
    """The folder of .proto files to generate from: `SHOAL_PROTO_DIR`, else an sdist's own copy,
    else the repository's `proto/`."""
    override = os.environ.get("SHOAL_PROTO_DIR")
    candidates = [Path(override)] if override else [HERE / "proto", HERE.parent.parent / "proto"]
    for folder in candidates:
        if any(folder.glob("*.proto")):
            return folder.resolve()
    raise SystemExit(
        "shoal-client: no .proto files in "
        + " or ".join(str(c) for c in candidates)
        + " (build from a Shoal checkout, or set SHOAL_PROTO_DIR to its proto/ folder)"
    )


def generate(protos: Path, out: Path) -> None:
    """Runs protoc on every file in `protos`, writing messages, type stubs and gRPC stubs to `out`,
    then makes the modules import each other inside the package."""
    from grpc_tools import protoc

    files = sorted(protos.glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    # Modules of .proto files that are gone must not survive a rebuild.
    for old in out.glob("*_pb2*.py*"):
        old.unlink()
    # google/protobuf/*.proto (timestamp.proto) ship inside grpcio-tools.
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={protos}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(f) for f in files),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"shoal-client: protoc failed on {protos}")
    # protoc writes `import spec_pb2 as spec__pb2`, which only works with the output folder on
    # sys.path; inside the package the modules are siblings.
    ours = "|".join(re.escape(f.stem) for f in files)
    sibling = re.compile(rf"^import ((?:{ours})_pb2(?:_grpc)?) as (\w+)$", re.MULTILINE)
    for module in out.glob("*_pb2*.py*"):
        text = module.read_text()
        module.write_text(sibling.sub(r"from . import \1 as \2", text))


class BuildPyWithProtos(build_py):
    """build_py that also generates `shoal.v1` (into the source tree for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target = HERE / "src" / GENERATED
        else:
            target = Path(self.build_lib) / GENERATED
        generate(proto_dir(), target)


class SdistWithProtos(sdist):
    """sdist that carries the .proto files, so that the sdist builds away from the repository."""

    def make_release_tree(self, base_dir, files) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto"
        target.mkdir(exist_ok=True)
        for proto in proto_dir().glob("*.proto"):
            shutil.copy2(proto, target / proto.name)


def requirements() -> list:
    """Run-time dependencies. Generated code refuses a grpcio older than the grpcio-tools that
    generated it, and a protobuf outside the range that grpcio-tools was built for, so the
    versions in this build decide the lower bounds."""
    try:
        grpcio = f"grpcio>={metadata.version('grpcio-tools')}"
        wanted = [r.split(";")[0].replace(" ", "") for r in metadata.requires("grpcio-tools") or []]
        protobuf = next((r for r in wanted if re.match(r"protobuf\b", r)), "protobuf")
    except metadata.PackageNotFoundError:
        grpcio, protobuf = "grpcio>=1.60", "protobuf>=4.21"
    return [grpcio, "grpcio-status>=1.60", protobuf, 'tomli>=1.1; python_version < "3.11"']


setup(
    install_requires=requirements(),
    cmdclass={"build_py": BuildPyWithProtos, "sdist": SdistWithProtos},
)
