"""Caffe's protobuf messages, built from our schema: prototxt text in, binary .caffemodel out.

The descriptor is generated from `runner.config.schema` (field names and numbers as in BVLC Caffe's
`caffe.proto`), so the schema stays the single source of truth; `proto_source()` renders the
same descriptor as `.proto` text, committed as `runner/config/proto/srcaffe.proto` and kept in sync by
a test.
"""
import dataclasses
import functools
import re

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from runner.config import schema
from runner.errors import UserError

PACKAGE = "caffe"
MESSAGES = (schema.BlobShape, schema.BlobProto, schema.FillerParameter, schema.NetStateRule,
            schema.ParamSpec, schema.ConvolutionParameter, schema.HDF5DataParameter,
            schema.InputParameter, schema.PReLUParameter, schema.ReLUParameter,
            schema.PoolingParameter, schema.InnerProductParameter, schema.ELUParameter,
            schema.PowerParameter, schema.ExpParameter, schema.LogParameter,
            schema.ThresholdParameter, schema.DropoutParameter, schema.ScaleParameter,
            schema.BiasParameter, schema.BatchNormParameter, schema.EltwiseParameter,
            schema.ConcatParameter, schema.SliceParameter, schema.CropParameter,
            schema.ReshapeParameter, schema.FlattenParameter, schema.ReductionParameter,
            schema.PixelShuffleParameter, schema.LayerParameter, schema.V1LayerParameter,
            schema.NetParameter, schema.SolverParameter)
# Caffe nests these enums in the message that uses them; Phase stands alone. (V1LayerParameter
# has a DimCheckMode of its own in caffe.proto, with the same values: it uses ParamSpec's here.)
ENUM_OWNERS = {schema.VARIANCE_NORM: schema.FillerParameter,
               schema.DIM_CHECK_MODE: schema.ParamSpec,
               schema.POOL_METHOD: schema.PoolingParameter,
               schema.ROUND_MODE: schema.PoolingParameter,
               schema.ELTWISE_OP: schema.EltwiseParameter,
               schema.REDUCTION_OP: schema.ReductionParameter,
               schema.SOLVER_MODE: schema.SolverParameter,
               schema.V1_LAYER_TYPE: schema.V1LayerParameter,
               schema.SOLVER_TYPE_ENUM: schema.SolverParameter}
FIELD_TYPE = descriptor_pb2.FieldDescriptorProto
SCALAR_PROTO_TYPES = {"string": FIELD_TYPE.TYPE_STRING, "bool": FIELD_TYPE.TYPE_BOOL,
                      "float": FIELD_TYPE.TYPE_FLOAT, "double": FIELD_TYPE.TYPE_DOUBLE,
                      "int32": FIELD_TYPE.TYPE_INT32, "uint32": FIELD_TYPE.TYPE_UINT32,
                      "int64": FIELD_TYPE.TYPE_INT64}


def _enum_full_name(enum):
    owner = ENUM_OWNERS.get(enum)
    return f".{PACKAGE}.{owner.__name__}.{enum.name}" if owner else f".{PACKAGE}.{enum.name}"


def _add_enum(container, enum):
    enum_proto = container.enum_type.add(name=enum.name)
    for number, value in enum.value_numbers():
        enum_proto.value.add(name=value, number=number)


def _default_text(key):
    default = key.default
    if default is dataclasses.MISSING or default is None:
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def _add_field(message_proto, key):
    meta = key.metadata
    kind = meta["kind"]
    field = message_proto.field.add(name=key.name, number=meta["number"])
    field.label = FIELD_TYPE.LABEL_REPEATED if meta["repeated"] else FIELD_TYPE.LABEL_OPTIONAL
    if isinstance(kind, schema.ProtoEnum):
        field.type = FIELD_TYPE.TYPE_ENUM
        field.type_name = _enum_full_name(kind)
    elif schema.is_message(kind):
        field.type = FIELD_TYPE.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{kind.__name__}"
    else:
        field.type = SCALAR_PROTO_TYPES[kind]
    default = _default_text(key)
    if default is not None and not meta["repeated"]:
        field.default_value = default
    if meta["packed"]:
        field.options.packed = True


@functools.cache
def file_descriptor():
    """The FileDescriptorProto of every net and solver message we support."""
    file_proto = descriptor_pb2.FileDescriptorProto(name="srcaffe.proto", package=PACKAGE,
                                                    syntax="proto2")
    _add_enum(file_proto, schema.PHASE)
    for message_class in MESSAGES:
        message_proto = file_proto.message_type.add(name=message_class.__name__)
        for enum, owner in ENUM_OWNERS.items():
            if owner is message_class:
                _add_enum(message_proto, enum)
        for key in schema.keys(message_class):
            _add_field(message_proto, key)
    return file_proto


@functools.cache
def _pool():
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    return pool


def message_type(message_class):
    """The protobuf message class for a schema class (e.g. schema.NetParameter)."""
    descriptor = _pool().FindMessageTypeByName(f"{PACKAGE}.{message_class.__name__}")
    return message_factory.GetMessageClass(descriptor)


def _shortest_float(value):
    # Caffe's float fields hold float32: print 0.001 back as 0.001, not 0.0010000000474974513,
    # so a prototxt and the same YAML give the same numbers.
    return float(str(np.float32(value)))


def _scalar_from_proto(field, value):
    if field.type == FIELD_TYPE.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FIELD_TYPE.TYPE_FLOAT:
        return _shortest_float(value)
    return value


def to_mapping(message):
    """The fields set in a protobuf message, as plain data ready for `schema.from_mapping`."""
    mapping = {}
    for field, value in message.ListFields():
        convert = (to_mapping if field.type == FIELD_TYPE.TYPE_MESSAGE
                   else functools.partial(_scalar_from_proto, field))
        repeated = field.is_repeated
        mapping[field.name] = [convert(item) for item in value] if repeated else convert(value)
    return mapping


def from_schema(instance):
    """A protobuf message holding a schema instance's set (non-default) values."""
    message = message_type(type(instance))()
    _fill(message, instance)
    return message


def _fill(message, instance):
    for key in schema.keys(type(instance)):
        value = getattr(instance, key.name)
        kind = key.metadata["kind"]
        if value is None or value == []:
            continue
        if schema.is_message(kind):
            if key.metadata["repeated"]:
                for item in value:
                    _fill(getattr(message, key.name).add(), item)
            elif value != kind():
                _fill(getattr(message, key.name), value)
        elif key.metadata["repeated"]:
            getattr(message, key.name).extend(value)
        elif value != key.default:
            setattr(message, key.name, value)


_UNKNOWN_FIELD = re.compile(r'Message type "caffe\.(\w+)" has no field named "(\w+)"')


def text_to_mapping(message_class, text, source):
    """Caffe prototxt text as plain data (the fields it sets), ready for `schema.from_mapping`.
    A key we do not know is reported after the values of the keys we know are checked: a layer
    of an unsupported type (whose parameters are unknown keys here) is reported by its type."""
    message = message_type(message_class)()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        lenient = message_type(message_class)()
        try:
            text_format.Parse(text, lenient, allow_unknown_field=True)
        except text_format.ParseError:
            raise UserError(source, _describe_parse_error(error)) from None
        schema.from_mapping(message_class, to_mapping(lenient), source)
        raise UserError(source, _describe_parse_error(error)) from None
    return to_mapping(message)


def parse_text(message_class, text, source):
    """Parse Caffe prototxt text into a validated schema instance."""
    return schema.from_mapping(message_class, text_to_mapping(message_class, text, source), source)


def _describe_parse_error(error):
    position = f"line {error.GetLine()}: " if error.GetLine() else ""
    unknown = _UNKNOWN_FIELD.search(str(error))
    if unknown:
        owner = getattr(schema, unknown.group(1))
        return f"{position}{owner.__name__}: {schema.unknown_key(owner, unknown.group(2))}"
    detail = re.sub(r"^\d+:\d+ : ", "", str(error))
    return f"{position}{detail}"


def proto_source():
    """The descriptor rendered as .proto text (what `runner/config/proto/srcaffe.proto` holds)."""
    file_proto = file_descriptor()
    lines = ["// Generated from runner/config/schema.py by "
             "runner.config.caffe_proto.proto_source(); do not",
             "// edit. Field names and numbers are BVLC Caffe's (src/caffe/proto/caffe.proto),",
             "// for the subset srcaffe supports; numbers >= 1000 are srcaffe extensions.",
             'syntax = "proto2";', "", f"package {PACKAGE};", ""]
    for enum in file_proto.enum_type:
        lines += _enum_lines(enum, "")
    for message in file_proto.message_type:
        lines.append(f"message {message.name} {{")
        for enum in message.enum_type:
            lines += _enum_lines(enum, "  ")
        for field in message.field:
            lines.append("  " + _field_line(field))
        lines += ["}", ""]
    return "\n".join(lines)


def _enum_lines(enum, indent):
    values = [f"{indent}  {value.name} = {value.number};" for value in enum.value]
    return [f"{indent}enum {enum.name} {{", *values, f"{indent}}}", ""]


_TYPE_NAMES = {number: name for name, number in SCALAR_PROTO_TYPES.items()}


def _field_line(field):
    label = "repeated" if field.label == FIELD_TYPE.LABEL_REPEATED else "optional"
    type_name = (field.type_name.removeprefix(f".{PACKAGE}.") if field.type_name
                 else _TYPE_NAMES[field.type])
    options = []
    if field.HasField("default_value"):
        quoted = f'"{field.default_value}"' if field.type == FIELD_TYPE.TYPE_STRING \
            else field.default_value
        options.append(f"default = {quoted}")
    if field.options.packed:
        options.append("packed = true")
    suffix = f" [{', '.join(options)}]" if options else ""
    return f"{label} {type_name} {field.name} = {field.number}{suffix};"
