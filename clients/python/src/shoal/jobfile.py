"""Reading job files as ``shoal submit`` does: parse the TOML, name the job after the file, resolve
relative paths against the file's folder, and read the checkpoints of a teacher
(``distill.teacher``) or parent (``inherit.checkpoint``) found here, pinning them to their step
directory and filling in their model, so the coordinator and workers can check the job against
them without reading the files again.

Dicts go through the same steps, with paths relative to a folder of the caller's choosing (the
working directory by default). Files the spec names need not exist here: a dataset may live on
the workers only, and the workers check what they read.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import grpc

from .errors import InvalidSpec
from .spec import spec_from_dict
from .v1 import spec_pb2

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on old interpreters only
    import tomli as tomllib

__all__ = ["load", "load_text", "from_dict", "resolve"]

PathLike = Union[str, "os.PathLike[str]"]

WEIGHTS = "model.safetensors"
JOB_FILE = "job.toml"
_DATASET_PATHS = ("images", "labels", "validation_images", "validation_labels", "path", "validation_path")
_EVALUATE_PATHS = ("artifact", "data", "output", "html")


def _field_error(field: str, reason: str) -> InvalidSpec:
    return InvalidSpec(grpc.StatusCode.INVALID_ARGUMENT, f"invalid job spec: {field}: {reason}", [(field, reason)])


def _absolute(path: Path) -> Path:
    # Like the CLI: absolute without resolving symlinks or `..`.
    return path if path.is_absolute() else Path.cwd() / path


def load(path: PathLike) -> spec_pb2.JobSpec:
    """The JobSpec of the TOML job file at ``path``, as ``shoal submit`` would send it."""
    origin = _absolute(Path(path))
    try:
        text = origin.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidSpec(grpc.StatusCode.INVALID_ARGUMENT, f"cannot read job file {origin}: {e}") from e
    return load_text(text, origin)


def load_text(text: str, origin: PathLike) -> spec_pb2.JobSpec:
    """Job-file text as if read from the file ``origin``: it names the job when the text does not,
    and relative paths are taken from its folder."""
    origin = _absolute(Path(origin))
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidSpec(grpc.StatusCode.INVALID_ARGUMENT, f"{origin}: {e}") from e
    spec = spec_from_dict(table)
    if not spec.name.strip():
        spec.name = origin.stem
    resolve(spec, origin.parent)
    return spec


def from_dict(job: Mapping[str, Any], base_dir: Optional[PathLike] = None) -> spec_pb2.JobSpec:
    """The JobSpec of a job-file-shaped dict, its relative paths taken from ``base_dir`` (default:
    the working directory)."""
    spec = spec_from_dict(job)
    resolve(spec, _absolute(Path(base_dir)) if base_dir is not None else Path.cwd())
    return spec


def resolve(spec: spec_pb2.JobSpec, base: Path) -> None:
    """Resolves the spec's relative paths against ``base`` and reads the teacher's and parent's
    checkpoints when they are here, in place."""
    if spec.HasField("dataset"):
        d = spec.dataset
        for name in _DATASET_PATHS:
            p = getattr(d, name)
            if p and not Path(p).is_absolute():
                setattr(d, name, str(base / p))
    # An evaluation job's files are relative to the job file too, the report's included.
    if spec.HasField("evaluate"):
        e = spec.evaluate
        for name in _EVALUATE_PATHS:
            named = getattr(e, name).strip()
            if named and not Path(named).is_absolute():
                setattr(e, name, str(base / named))
    # External trials run in the job file's folder unless told otherwise.
    if spec.HasField("command") and not spec.command.workdir.strip():
        spec.command.workdir = str(base)
    if spec.HasField("distill"):
        _resolve_teacher(spec.distill, base)
    if spec.HasField("inherit"):
        _resolve_parent(spec.inherit, base)


def _resolve_teacher(d: spec_pb2.DistillSpec, base: Path) -> None:
    """Pins ``teacher`` to its step directory and fills ``teacher_model`` and ``teacher_outputs``."""
    if not d.teacher.strip() or d.HasField("teacher_model"):
        return
    saved = _read_checkpoint("distill.teacher", base / d.teacher.strip())
    if saved is None:
        return
    folder, job = saved
    try:
        d.teacher_outputs = _output_width(folder / WEIGHTS)
    except (OSError, ValueError) as e:
        raise _field_error("distill.teacher", f"{folder}: {e}") from e
    if job.HasField("model"):
        d.teacher_model.CopyFrom(job.model)
    d.teacher = str(folder)


def _resolve_parent(i: spec_pb2.InheritSpec, base: Path) -> None:
    """Pins ``checkpoint`` to its step directory and fills ``model`` from its job file."""
    if not i.checkpoint.strip() or i.HasField("model"):
        return
    saved = _read_checkpoint("inherit.checkpoint", base / i.checkpoint.strip())
    if saved is None:
        return
    folder, job = saved
    if job.HasField("model"):
        i.model.CopyFrom(job.model)
    i.checkpoint = str(folder)


def _step_dir(path: Path) -> Optional[Path]:
    """``path`` itself when it holds weights, else its newest ``step-*`` directory with weights."""
    if (path / WEIGHTS).is_file():
        return path
    try:
        steps = [p for p in path.iterdir() if p.name.startswith("step-") and (p / WEIGHTS).is_file()]
    except OSError:
        return None
    return max(steps, key=lambda p: p.name) if steps else None


def _read_checkpoint(field: str, named: Path) -> Optional[Tuple[Path, spec_pb2.JobSpec]]:
    """The checkpoint's step directory and saved job, or None when there is none here (it may
    exist on the workers only)."""
    folder = _step_dir(named)
    if folder is None:
        return None
    folder = _absolute(folder)
    try:
        text = (folder / JOB_FILE).read_text(encoding="utf-8")
    except OSError as e:
        raise _field_error(field, f"{folder}: cannot read {JOB_FILE}: {e}") from e
    try:
        job = spec_from_dict(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, InvalidSpec) as e:
        raise _field_error(field, f"{folder}: {JOB_FILE} is not a job file: {e}") from e
    return folder, job


def _output_width(weights: Path) -> int:
    """Rows of ``output.weight`` in a safetensors file: a little-endian u64 header length, then
    that much JSON giving each tensor's shape. A sparsely stored weight keeps its shape in the
    data of ``output.weight.sparse_shape`` (u32 values)."""
    with open(weights, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{WEIGHTS}: cannot read the header")
        (length,) = struct.unpack("<Q", head)
        if length > 100 << 20:
            raise ValueError(f"{WEIGHTS}: a header of {length} bytes is not plausible")
        raw = f.read(length)
        if len(raw) != length:
            raise ValueError(f"{WEIGHTS}: cannot read the header")
        header = json.loads(raw)
        shape = header.get("output.weight", {}).get("shape")
        if shape:
            return int(shape[0])
        offsets = header.get("output.weight.sparse_shape", {}).get("data_offsets")
        if not offsets:
            raise ValueError(f"{WEIGHTS} has no `output.weight`")
        f.seek(8 + length + int(offsets[0]))
        rows = f.read(4)
        if len(rows) != 4:
            raise ValueError(f"{WEIGHTS}: cannot read `output.weight.sparse_shape`")
        return struct.unpack("<I", rows)[0]
