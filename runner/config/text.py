"""Config files as text: which names mean which format, and their bytes read as Caffe reads a
prototxt: UTF-8, except in comments.

Caffe's text parser skips a `#` comment to the end of its line whatever bytes it holds, so
public net files carry Latin-1 or GBK notes in their comments and still load. Here too: bytes
that are not UTF-8 are allowed in comments (and read as U+FFFD, never parsed), and anywhere else
they are an error naming the line. A comment starts at a `#` outside a quoted string; in YAML
only at the start of a line or after a space or tab, as YAML's own rule says.
"""
from runner.errors import UserError

# the suffixes each config format is read from, and the one it is written with
YAML_SUFFIXES = (".yaml", ".yml")
PROTOTXT_SUFFIXES = (".prototxt", ".pt", ".txt")
WRITTEN_SUFFIXES = {"yaml": ".yaml", "prototxt": ".prototxt"}

WHITESPACE = b" \t"
# in YAML a quote opens a quoted scalar only where a scalar starts
YAML_SCALAR_STARTS = WHITESPACE + b"[{,:-?"


def decode(data, source, yaml_rules=False):
    """`data` (bytes) as text; a UserError naming the line of a byte that is not UTF-8 outside
    a comment."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\0" in data:
        raise UserError(source, "not a text file")
    lines = []
    for number, line in enumerate(data.split(b"\n"), 1):
        start = comment_start(line, yaml_rules)
        try:
            code = line[:start].decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(source, f"line {number}: byte 0x{line[error.start]:02x} (column "
                            f"{error.start + 1}) is not UTF-8 text; only comments may hold "
                            "other bytes") from None
        lines.append(code + line[start:].decode("utf-8", errors="replace"))
    return "\n".join(lines)


def comment_start(line, yaml_rules=False):
    """The index of the `#` that starts the comment of one line of bytes (its length if none).
    Quoted strings are skipped: "..." and '...' with backslash escapes in a prototxt, YAML's
    "..." with backslash escapes and '...' with '' for a quote."""
    quote = None
    previous = ord(" ")          # a line starts as if after a space
    index = 0
    while index < len(line):
        byte = line[index]
        if quote is not None:
            if byte == ord("\\") and (quote == ord('"') or not yaml_rules):
                index += 1                         # the escaped byte cannot end the string
            elif byte == quote == ord("'") and yaml_rules and line[index + 1:index + 2] == b"'":
                index += 1                         # YAML's '' inside '...'
            elif byte == quote:
                quote = None
        elif byte in b"\"'" and (not yaml_rules or previous in YAML_SCALAR_STARTS):
            quote = byte
        elif byte == ord("#") and (not yaml_rules or previous in WHITESPACE):
            return index
        previous = byte
        index += 1
    return len(line)
