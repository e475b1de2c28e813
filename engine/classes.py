"""User-defined classes: named attribute vectors read from and written to TOML, JSON or CSV files.

A user class is a name and a value per attribute of a dataset (attributes not given are 0). Files:

- TOML: ``[classes.NAME]`` tables of ``"attribute" = value``, or ``classes.NAME = [v1, v2, ...]``
  (a vector in the dataset's attribute order)::

      [classes.blue_crest]
      "head_color::blue" = 1.0
      "crest::yes" = 1.0

- JSON: ``{"classes": {"NAME": {"attribute": value, ...} | [v1, v2, ...]}}`` (a top-level mapping
  of names without the ``"classes"`` key is accepted too);
- CSV: a header ``name,<attribute>,<attribute>,...`` and one row per class.

Every problem is a ``ClassFileError`` naming the file and what is wrong: an empty file, a vector
of the wrong length, unknown attribute names, non-numeric or non-finite values, duplicate class
names, values outside float32's range (they would become inf in the model), class or attribute
names with control characters or line breaks (they could forge output lines or send escape codes
to a terminal), names longer than ``MAX_NAME_LEN``, class names that clash with the dataset's own
classes (``reserved``), and a path that is not a regular file or is larger than
``MAX_FILE_BYTES`` (a device, a FIFO or a huge stream is refused without being read). The two
limits are this project's choice (docs/reliability.md). ``save_classes`` writes atomically (temporary file in the same folder, fsync, os.replace),
so an interrupted save leaves the previous file intact. No Qt here: the GUI and the CLI share it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from .errors import SGMAError
from .io import atomic_write_bytes

FORMATS = (".toml", ".json", ".csv")
MAX_NAME_LEN = 200
MAX_FILE_BYTES = 8 * 1024 * 1024
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ClassFileError(SGMAError, ValueError):
    """A class file cannot be read or does not fit the dataset; the message names the file."""


@dataclass
class UserClass:
    name: str
    values: dict[str, float] = field(default_factory=dict)

    def vector(self, attribute_names: Sequence[str]) -> np.ndarray:
        return to_matrix([self], attribute_names)[0]

    @classmethod
    def from_vector(cls, name: str, vector, attribute_names: Sequence[str]) -> "UserClass":
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if len(v) != len(attribute_names):
            raise ValueError(f"class {name!r}: {len(v)} values for {len(attribute_names)} attributes")
        return cls(name, {a: float(x) for a, x in zip(attribute_names, v)})


def _format(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ClassFileError(f"{path}: unknown class file type {ext or '(none)'!r}; use .toml, .json or .csv")
    return ext


def _number(path: Path, where: str, value) -> float:
    if isinstance(value, bool):
        raise ClassFileError(f"{path}: {where}: {value!r} is not a number")
    if isinstance(value, str):
        value = value.strip()
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ClassFileError(f"{path}: {where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ClassFileError(f"{path}: {where}: {value!r} is not a finite number")
    if abs(x) > FLOAT32_MAX:
        raise ClassFileError(f"{path}: {where}: {value!r} is outside the float32 range (|x| <= {FLOAT32_MAX:.4g})")
    return x


def check_name(name: str, where: str, what: str = "class name") -> str:
    """``name`` stripped; a ClassFileError (prefixed ``where``) for an empty name, one longer than
    MAX_NAME_LEN, or one with a control, format or line-separator character."""
    name = str(name).strip()
    if not name:
        raise ClassFileError(f"{where}: a {what} is empty")
    if len(name) > MAX_NAME_LEN:
        raise ClassFileError(f"{where}: {what} {name[:40]!r}... is {len(name)} characters long (at most {MAX_NAME_LEN})")
    bad = [ch for ch in name if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]
    if bad:
        raise ClassFileError(f"{where}: {what} {name!r} holds a control character or line break "
                             f"({', '.join(f'U+{ord(c):04X}' for c in dict.fromkeys(bad))})")
    return name


def _entry(path: Path, name: str, body, attribute_names: Optional[Sequence[str]]) -> UserClass:
    """One class from a mapping attribute -> value or a full vector."""
    name = check_name(name, str(path))
    if isinstance(body, dict):
        values = {check_name(k, f"{path}: class {name!r}", "attribute name"): _number(path, f"class {name!r}, attribute {k!r}", v) for k, v in body.items()}
        if attribute_names is not None:
            known = set(attribute_names)
            unknown = [k for k in values if k not in known]
            if unknown:
                raise ClassFileError(f"{path}: class {name!r}: unknown attribute name(s) "
                                     f"{', '.join(map(repr, unknown[:5]))}"
                                     f"{' ...' if len(unknown) > 5 else ''} (the dataset has "
                                     f"{len(attribute_names)} attributes)")
        return UserClass(name, values)
    if isinstance(body, (list, tuple)):
        if attribute_names is None:
            raise ClassFileError(f"{path}: class {name!r} is a vector; the attribute names are needed to read it")
        if len(body) != len(attribute_names):
            raise ClassFileError(f"{path}: class {name!r} has {len(body)} values but the dataset has "
                                 f"{len(attribute_names)} attributes")
        return UserClass(name, {a: _number(path, f"class {name!r}, value {k + 1} ({a!r})", v)
                                for k, (a, v) in enumerate(zip(attribute_names, body))})
    raise ClassFileError(f"{path}: class {name!r}: expected a table of attribute = value or a list "
                         f"of numbers, got {type(body).__name__}")


def _from_mapping(path: Path, data, attribute_names) -> list[UserClass]:
    if not isinstance(data, dict):
        raise ClassFileError(f"{path}: expected a mapping of class names, got {type(data).__name__}")
    table = data["classes"] if "classes" in data else data
    if not isinstance(table, dict):
        raise ClassFileError(f"{path}: 'classes' must be a table of class names")
    return [_entry(path, n, b, attribute_names) for n, b in table.items()]


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    """json.loads hook: a repeated key is an error (json keeps the last one silently)."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            table = all(isinstance(x, (dict, list)) for _, x in pairs)
            raise _DuplicateKey(f"duplicate class name {k!r}" if table else f"attribute {k!r} is given twice")
        out[k] = v
    return out


def _parse_json(path: Path, text: str):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise ClassFileError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ClassFileError(f"{path}: not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:   # parser limits: huge integers, deep nesting
        raise ClassFileError(f"{path}: not a usable JSON class file: {type(e).__name__}: {str(e)[:200]}") from None


def _from_csv(path: Path, text: str, attribute_names) -> list[UserClass]:
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise ClassFileError(f"{path}: not a readable CSV file: {e}") from None
    if not rows:
        raise ClassFileError(f"{path}: the file is empty (no header, no class)")
    header = [h.strip() for h in rows[0]]
    if not header or header[0].lower() != "name":
        raise ClassFileError(f"{path}: line 1: the header must start with 'name', then attribute names")
    attrs = [check_name(a, f"{path}: line 1", "attribute name") for a in header[1:]]
    if attribute_names is not None:
        known = set(attribute_names)
        unknown = [a for a in attrs if a not in known]
        if unknown:
            raise ClassFileError(f"{path}: line 1: unknown attribute name(s) {', '.join(map(repr, unknown[:5]))}"
                                 f"{' ...' if len(unknown) > 5 else ''}")
    dup = sorted({a for a in attrs if attrs.count(a) > 1})
    if dup:
        raise ClassFileError(f"{path}: line 1: attribute(s) listed twice: {', '.join(dup[:5])}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ClassFileError(f"{path}: line {line}: {len(row) - 1} values for {len(attrs)} attributes in the header")
        name = check_name(row[0], f"{path}: line {line}")
        out.append(UserClass(name, {a: _number(path, f"line {line}, attribute {a!r}", v)
                                    for a, v in zip(attrs, row[1:])}))
    return out


def _read_text(path: Path) -> str:
    """The file's text, refusing devices, FIFOs and files above MAX_FILE_BYTES before reading."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ClassFileError(f"{path}: not a regular file (a folder, device or pipe is not read)")
    if st.st_size > MAX_FILE_BYTES:
        raise ClassFileError(f"{path}: the file is {st.st_size} bytes; a class file may have at most {MAX_FILE_BYTES}")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)       # the file may grow while it is read
    if len(data) > MAX_FILE_BYTES:
        raise ClassFileError(f"{path}: the file is larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8-sig")


def load_classes(path: str | os.PathLike, attribute_names: Optional[Sequence[str]] = None,
                 reserved: Iterable[str] = ()) -> list[UserClass]:
    """Read a class file (.toml, .json or .csv). ``attribute_names`` (the dataset's) validates
    names and reads vectors; without it only named values are accepted. A class named like one
    of ``reserved`` (the dataset's classes; compared case-insensitively) is refused."""
    path = Path(path)
    ext = _format(path)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        raise ClassFileError(f"class file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClassFileError(f"{path}: cannot read the file: {e}") from None
    if not text.strip():
        raise ClassFileError(f"{path}: the file is empty")
    if ext == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ClassFileError(f"{path}: not valid TOML: {e}") from None
        except (ValueError, RecursionError) as e:   # parser limits: huge integers, deep nesting
            raise ClassFileError(f"{path}: not a usable TOML class file: {type(e).__name__}: {str(e)[:200]}") from None
        classes = _from_mapping(path, data, attribute_names)
    elif ext == ".json":
        classes = _from_mapping(path, _parse_json(path, text), attribute_names)
    else:
        classes = _from_csv(path, text, attribute_names)
    if not classes:
        raise ClassFileError(f"{path}: the file holds no class")
    seen: set[str] = set()
    taken = {str(n).strip().casefold() for n in reserved}
    for c in classes:
        if c.name in seen:
            raise ClassFileError(f"{path}: duplicate class name {c.name!r}")
        if c.name.casefold() in taken:
            raise ClassFileError(f"{path}: class {c.name!r} has the name of a dataset class; rename it")
        seen.add(c.name)
    return classes


def _attribute_order(classes: Iterable[UserClass], attribute_names: Optional[Sequence[str]]) -> list[str]:
    if attribute_names is not None:
        return list(attribute_names)
    order: dict[str, None] = {}
    for c in classes:
        order.update(dict.fromkeys(c.values))
    return list(order)


def dumps_classes(classes: Sequence[UserClass], fmt: str,
                  attribute_names: Optional[Sequence[str]] = None) -> str:
    """The text of a class file in format ``fmt`` (".toml", ".json" or ".csv")."""
    names = [check_name(c.name, "cannot save the classes") for c in classes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ClassFileError(f"duplicate class name(s): {', '.join(dup)}")
    if fmt == ".csv":
        attrs = _attribute_order(classes, attribute_names)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", *attrs])
        for c in classes:
            w.writerow([c.name, *(repr(float(c.values.get(a, 0.0))) for a in attrs)])
        return buf.getvalue()
    table = {c.name: {a: float(v) for a, v in c.values.items()} for c in classes}
    if fmt == ".json":
        return json.dumps({"classes": table}, indent=2) + "\n"
    if fmt == ".toml":
        import tomli_w
        return tomli_w.dumps({"classes": table})
    raise ClassFileError(f"unknown class file type {fmt!r}; use .toml, .json or .csv")


def save_classes(path: str | os.PathLike, classes: Sequence[UserClass],
                 attribute_names: Optional[Sequence[str]] = None) -> Path:
    """Write ``classes`` atomically in the format of ``path``'s extension."""
    path = Path(path)
    atomic_write_bytes(path, dumps_classes(classes, _format(path), attribute_names).encode("utf-8"))
    return path


def to_matrix(classes: Sequence[UserClass], attribute_names: Sequence[str]) -> np.ndarray:
    """(n_classes, n_attributes) float32 in ``attribute_names`` order; missing attributes are 0."""
    col = {a: j for j, a in enumerate(attribute_names)}
    m = np.zeros((len(classes), len(attribute_names)), dtype=np.float32)
    for i, c in enumerate(classes):
        for a, v in c.values.items():
            if a not in col:
                raise ValueError(f"class {c.name!r}: unknown attribute {a!r}")
            m[i, col[a]] = v
    return m


def parse_vector(text: str, attribute_names: Sequence[str]) -> dict[str, float]:
    """A pasted vector: numbers separated by commas, spaces, tabs or new lines (one per attribute,
    in order), a JSON list, or a JSON object / lines ``attribute = value`` or ``attribute: value``."""
    text = text.strip()
    where = Path("<pasted text>")
    if not text:
        raise ClassFileError("the pasted text is empty")
    if text[0] in "[{":
        return _entry(where, "pasted", _parse_json(where, text), attribute_names).values
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if any("=" in ln or ln.rstrip()[-1:].isdigit() and ":" in ln for ln in lines) and \
            not all(_is_number(t) for t in text.replace(",", " ").replace(";", " ").split()):
        pairs = {}
        for ln in lines:
            cut = ln.find("=") if "=" in ln else ln.rfind(":")
            if cut < 0:
                raise ClassFileError(f"pasted line {ln.strip()!r}: expected 'attribute = value'")
            pairs[ln[:cut].strip().strip('"\'')] = ln[cut + 1:]
        return _entry(where, "pasted", pairs, attribute_names).values
    tokens = text.replace(",", " ").replace(";", " ").split()
    return _entry(where, "pasted", tokens, attribute_names).values


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
