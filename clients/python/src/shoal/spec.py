"""Job specs as Python data: the structure of a TOML job file (a dict) to the ``shoal.v1.JobSpec``
message and back, with the same rules as the ``shoal`` CLI, plus a general message-to-dict helper.

The dict has the job file's shape: top-level keys are JobSpec's fields, tables are nested dicts,
arrays are lists, keys are the proto field names (``batch_size``, not ``batchSize``). Two places
differ from the message, as in job files:

* ``parallelism.data`` is a count of ranks or an elastic range ``"MIN..MAX"`` (on the wire:
  ``data_min`` and ``data``);
* ``search.params[].values`` and ``search.params[].when.values`` are plain values (numbers,
  strings, booleans, lists); on the wire each is a JSON literal.

Unknown keys and values of the wrong type are refused here, every one with its path, as
:class:`~shoal.errors.InvalidSpec`; everything else is checked by the coordinator.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, List, Mapping, Tuple, cast

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .errors import InvalidSpec
from .v1 import spec_pb2

__all__ = ["spec_from_dict", "spec_to_dict", "to_dict"]

_RANGE = re.compile(r"^\s*([+-]?\d+)\s*\.\.\s*([+-]?\d+)\s*$")
# Keys a job file's [parallelism] table may have (data_min is written as data = "MIN..MAX").
_PARALLELISM_KEYS = ("data", "pipeline")

_INTEGERS = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}
_FLOATS = {FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT}


def _invalid(errors: List[Tuple[str, str]]) -> InvalidSpec:
    lines = "; ".join(f"{p}: {r}" for p, r in errors)
    return InvalidSpec(grpc.StatusCode.INVALID_ARGUMENT, f"invalid job spec: {lines}", errors)


def _json_literal(value: Any, path: str, errors: List[Tuple[str, str]]) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        errors.append((path, f"not a plain value ({e})"))
        return "null"


def _literals(values: Any, path: str, errors: List[Tuple[str, str]]) -> Any:
    if not isinstance(values, list):
        errors.append((path, f"expected a list of values, found {_kind(values)}"))
        return values
    return [_json_literal(v, f"{path}[{i}]", errors) for i, v in enumerate(values)]


def _parallelism(table: Any, errors: List[Tuple[str, str]]) -> Any:
    if not isinstance(table, Mapping):
        return table  # the walk below reports the wrong type
    out: Dict[str, Any] = {}
    for key, value in table.items():
        if key not in _PARALLELISM_KEYS:
            errors.append((f"parallelism.{key}", "unknown field, expected `data` or `pipeline`"))
        elif key == "data" and isinstance(value, str):
            m = _RANGE.match(value)
            if m is None:
                errors.append(
                    ("parallelism.data", f'`{value}` is neither a number of ranks nor a range "MIN..MAX"')
                )
            else:
                out["data_min"], out["data"] = int(m.group(1)), int(m.group(2))
        else:
            out[key] = value
    return out


def _wire_form(job: Mapping[str, Any], errors: List[Tuple[str, str]]) -> Dict[str, Any]:
    """A copy of the job-file dict with the job-file-only spellings turned into the message's."""
    out = dict(job)
    if "parallelism" in out:
        out["parallelism"] = _parallelism(out["parallelism"], errors)
    search = out.get("search")
    if isinstance(search, Mapping) and isinstance(search.get("params"), list):
        search = dict(search)
        params = []
        for i, param in enumerate(search["params"]):
            if isinstance(param, Mapping):
                param = dict(param)
                base = f"search.params[{i}]"
                if "values" in param:
                    param["values"] = _literals(param["values"], f"{base}.values", errors)
                when = param.get("when")
                if isinstance(when, Mapping) and "values" in when:
                    when = dict(when)
                    when["values"] = _literals(when["values"], f"{base}.when.values", errors)
                    param["when"] = when
            params.append(param)
        search["params"] = params
        out["search"] = search
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    # Protobuf releases without `is_repeated` have `label`.
    return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)


def _message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field (never None for one)."""
    descriptor = field.message_type
    if descriptor is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return descriptor


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        and bool(_message_type(field).GetOptions().map_entry)
        and _is_repeated(field)
    )


def _check_scalar(field: FieldDescriptor, value: Any, path: str, errors: List[Tuple[str, str]]) -> None:
    t = field.cpp_type
    if t == FieldDescriptor.CPPTYPE_STRING:
        ok, want = isinstance(value, str), "a string"
    elif t == FieldDescriptor.CPPTYPE_BOOL:
        ok, want = isinstance(value, bool), "a boolean"
    elif t in _INTEGERS:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif t in _FLOATS:
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, want = True, ""
    if not ok:
        errors.append((path, f"expected {want}, found {_kind(value)}"))


def _check(table: Any, descriptor: Descriptor, path: str, errors: List[Tuple[str, str]]) -> None:
    """Checks keys and value types against the message, as the CLI's strict TOML reading does."""
    if not isinstance(table, Mapping):
        errors.append((path or "job", f"expected a table, found {_kind(table)}"))
        return
    for key, value in table.items():
        here = f"{path}.{key}" if path else str(key)
        field = descriptor.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(f"`{f.name}`" for f in descriptor.fields)
            errors.append((here, f"unknown field, expected one of {known}"))
        elif _is_map(field):
            if not isinstance(value, Mapping):
                errors.append((here, f"expected a table, found {_kind(value)}"))
                continue
            value_field = _message_type(field).fields_by_name["value"]
            for k, v in value.items():
                _check_scalar(value_field, v, f"{here}.{k}", errors)
        elif _is_repeated(field):
            if not isinstance(value, (list, tuple)):
                errors.append((here, f"expected a list, found {_kind(value)}"))
                continue
            for i, item in enumerate(value):
                if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                    _check(item, _message_type(field), f"{here}[{i}]", errors)
                else:
                    _check_scalar(field, item, f"{here}[{i}]", errors)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            _check(value, _message_type(field), here, errors)
        else:
            _check_scalar(field, value, here, errors)


def spec_from_dict(job: Mapping[str, Any]) -> spec_pb2.JobSpec:
    """The JobSpec message for a dict shaped like a job file (see the module's notes).

    Paths are taken as they are; :func:`shoal.jobfile.load` resolves them against a folder.
    Raises :class:`~shoal.errors.InvalidSpec` naming every unknown key and mistyped value.
    """
    errors: List[Tuple[str, str]] = []
    wire = _wire_form(job, errors) if isinstance(job, Mapping) else job
    _check(wire, cast(Descriptor, spec_pb2.JobSpec.DESCRIPTOR), "", errors)
    if errors:
        raise _invalid(errors)
    try:
        return json_format.ParseDict(wire, spec_pb2.JobSpec())
    except json_format.ParseError as e:
        # Out-of-range integers and the like: what the walk above does not check.
        raise _invalid([("", str(e))]) from e


def _plain(message: Message) -> Dict[str, Any]:
    """Set fields only, scalars as Python values (the job-file view of a spec message)."""
    out: Dict[str, Any] = {}
    for field, value in message.ListFields():
        if _is_map(field):
            out[field.name] = dict(value)
        elif _is_repeated(field):
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                out[field.name] = [_plain(v) for v in value]
            else:
                out[field.name] = list(value)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            out[field.name] = _plain(value)
        else:
            out[field.name] = value
    return out


def _plain_values(values: List[str]) -> List[Any]:
    parsed = []
    for v in values:
        try:
            parsed.append(json.loads(v))
        except ValueError:
            parsed.append(v)
    return parsed


def spec_to_dict(spec: spec_pb2.JobSpec) -> Dict[str, Any]:
    """A JobSpec as a job-file dict (set fields only): the inverse of :func:`spec_from_dict`, so
    ``spec_from_dict(spec_to_dict(s)) == s``."""
    out = _plain(spec)
    par = out.get("parallelism")
    if par is not None:
        data_min = par.pop("data_min", None)
        if data_min is not None and "data" in par:
            par["data"] = f"{data_min}..{par['data']}"
    for param in out.get("search", {}).get("params", []):
        if "values" in param:
            param["values"] = _plain_values(param["values"])
        if "values" in param.get("when", {}):
            param["when"]["values"] = _plain_values(param["when"]["values"])
    return out


def _has_presence(field: FieldDescriptor) -> bool:
    presence = getattr(field, "has_presence", None)
    if presence is not None:
        return bool(presence)
    return field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE or field.containing_oneof is not None


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        if _message_type(field).full_name == "google.protobuf.Timestamp":
            return value.ToDatetime(tzinfo=datetime.timezone.utc)
        return to_dict(value)
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        named = field.enum_type.values_by_number.get(value) if field.enum_type is not None else None
        return named.name if named is not None else value
    return value


def to_dict(message: Message) -> Dict[str, Any]:
    """Any Shoal message as plain Python data, keyed by proto field names.

    Fields without presence are always there (their default when unset); messages, ``optional``
    scalars and oneof members only when set. Enums become their names (``"JOB_STATE_RUNNING"``),
    timestamps timezone-aware :class:`datetime.datetime` objects, 64-bit integers stay ``int``.
    For a JobSpec in job-file form use :func:`spec_to_dict`.
    """
    out: Dict[str, Any] = {}
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    for field in descriptor.fields:
        if _is_map(field):
            value_field = _message_type(field).fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in getattr(message, field.name).items()}
        elif _is_repeated(field):
            out[field.name] = [_value(field, v) for v in getattr(message, field.name)]
        elif _has_presence(field) and not message.HasField(field.name):
            continue
        else:
            out[field.name] = _value(field, getattr(message, field.name))
    return out
