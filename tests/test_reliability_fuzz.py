"""Property-based tests (hypothesis) of every text format the project reads (issue 7): for
arbitrary input each parser either succeeds or raises the project's own error class with a
message (DatasetError, ConfigError, ClassFileError), never anything else: no IndexError,
KeyError, csv.Error, RecursionError, bare ValueError or OSError reaches the user.

Formats: CUB list files (xlsa17.read_rows / by_id / read_matrix / read_class_list, and whole
load_cub calls with one metadata file replaced), AwA2 classes / predicates / predicate matrices,
user-folder CSVs, user class files (TOML / JSON / CSV, pasted vectors), and run configs (TOML
through load_toml, dicts through from_dict)."""
from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures_data import make_awa2, make_cub, make_folder  # noqa: E402

from sgma.engine.config import ConfigError, RunConfig, from_dict, load_toml  # noqa: E402
from sgma.engine.data.awa2 import load_awa2  # noqa: E402
from sgma.engine.data.base import DatasetError  # noqa: E402
from sgma.engine.data.cub import load_cub  # noqa: E402
from sgma.engine.data.folder import load_folder  # noqa: E402
from sgma.engine.data.xlsa17 import by_id, read_class_list, read_matrix, read_rows  # noqa: E402

try:
    from sgma.engine.classes import ClassFileError, load_classes, parse_vector
except ImportError:   # engine/classes.py is new; its tests skip where it is absent
    ClassFileError = load_classes = parse_vector = None

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
needs_classes = pytest.mark.skipif(load_classes is None, reason="engine/classes.py not present")

# texts that look like the formats (numbers, ids, names, separators) more often than random text
TOKEN = st.one_of(st.integers(-3, 40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "1_0", "", "a", "001.Bird_A",
                                   "has_size::small", "ñ", "\ufeff", "\x00", "\u2028", '"', ",", "=", "#"]),
                  st.text(max_size=8))
LINE = st.lists(TOKEN, max_size=7).flatmap(
    lambda toks: st.sampled_from([" ", "\t", ",", "  "]).map(lambda sep: sep.join(toks)))
STRUCTURED = st.lists(LINE, max_size=12).map(lambda ls: "\n".join(ls))
ANY_TEXT = st.one_of(STRUCTURED, st.text(max_size=300))
ANY_BYTES = st.one_of(ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200))


def _write(path: Path, data) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="sgma_fuzz_"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- CUB / xlsa17 text helpers
COLUMN_TYPES = st.sampled_from([([int, str], 1), ([int, str], -1), ([int, int], -1),
                                ([int, float, float, float, float], -1), ([int, int, float, float, int], -1),
                                ([str], 0), ([float] * 3, -1)])


@FUZZ
@given(data=ANY_BYTES, spec=COLUMN_TYPES)
@example(data=b"1 a\n1 b\n", spec=([int, str], 1))
@example(data=b"1 2 3\n", spec=([int, int], -1))
@example(data=b"\xff\xfe", spec=([int, str], 1))
def test_read_rows_and_by_id_raise_only_dataset_error(scratch, data, spec):
    types, maxsplit = spec
    p = _write(scratch / "list.txt", data)
    try:
        rows = read_rows(p, types, maxsplit=maxsplit)
        if len(types) >= 2:
            by_id(rows, p)
    except DatasetError as e:
        assert str(p) in str(e)
    else:
        for n, fields in rows:
            assert len(fields) == len(types) and n >= 1
            for t, v in zip(types, fields):
                assert isinstance(v, t)
                if t is float:
                    assert math.isfinite(v)


@FUZZ
@given(data=ANY_BYTES, shape=st.tuples(st.integers(0, 4), st.integers(1, 4)))
def test_read_matrix_raises_only_dataset_error(scratch, data, shape):
    p = _write(scratch / "matrix.txt", data)
    try:
        m = read_matrix(p, *shape)
    except DatasetError as e:
        assert str(p) in str(e)
    else:
        assert m.shape == shape and (m == m).all()


@FUZZ
@given(data=ANY_BYTES)
def test_read_class_list_raises_only_dataset_error(scratch, data):
    p = _write(scratch / "classes.txt", data)
    try:
        names = read_class_list(p)
    except DatasetError as e:
        assert str(p) in str(e)
    else:
        assert all(isinstance(n, str) and n for n in names)


@pytest.fixture(scope="module")
def cub_root(scratch):
    return make_cub(scratch / "c", images=False)


CUB_FILES = ["images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt",
             "parts/parts.txt", "parts/part_locs.txt", "attributes/class_attribute_labels_continuous.txt",
             "../attributes.txt", "../trainvalclasses.txt", "../testclasses.txt", "../trainclasses1.txt"]


@FUZZ
@given(which=st.sampled_from(CUB_FILES), data=ANY_BYTES, semantics=st.sampled_from(["att", "dataset"]))
@example(which="images.txt", data=b"", semantics="att")
@example(which="image_class_labels.txt", data=b"", semantics="att")
@example(which="classes.txt", data=b"", semantics="att")
@example(which="../attributes.txt", data=b"", semantics="att")
@example(which="parts/parts.txt", data=b"", semantics="att")
@example(which="../testclasses.txt", data=b"", semantics="att")
def test_load_cub_with_one_arbitrary_file_raises_only_dataset_error(cub_root, which, data, semantics):
    p = (cub_root / "CUB_200_2011" / which).resolve()
    original = p.read_bytes()
    try:
        _write(p, data)
        try:
            d = load_cub(cub_root, check_images=False, semantics=semantics)
        except DatasetError as e:
            assert str(e)
        else:
            assert len(d.class_names) == d.semantics.shape[0] and (d.semantics == d.semantics).all()
    finally:
        p.write_bytes(original)


# ---------------------------------------------------------------- AwA2
@pytest.fixture(scope="module")
def awa_root(scratch):
    return make_awa2(scratch / "a", images=False)


@FUZZ
@given(which=st.sampled_from(["classes.txt", "predicates.txt", "predicate-matrix-continuous.txt",
                              "trainvalclasses.txt", "testclasses.txt"]),
       data=ANY_BYTES, semantics=st.sampled_from(["att", "dataset"]))
@example(which="predicate-matrix-continuous.txt", data=b"-1 -1 -1\n" * 5, semantics="dataset")
@example(which="classes.txt", data=b"", semantics="att")
def test_load_awa2_with_one_arbitrary_file_raises_only_dataset_error(awa_root, which, data, semantics):
    p = awa_root / which
    original = p.read_bytes()
    try:
        _write(p, data)
        try:
            d = load_awa2(awa_root, check_images=False, semantics=semantics)
        except DatasetError as e:
            assert str(e)
        else:
            assert (d.semantics == d.semantics).all()
    finally:
        p.write_bytes(original)


# ---------------------------------------------------------------- user folder CSVs
@pytest.fixture(scope="module")
def folder_root(scratch):
    return make_folder(scratch / "f")


CSV_TEXT = st.one_of(ANY_TEXT, st.lists(st.lists(TOKEN, max_size=6).map(",".join), max_size=8).map("\n".join))


@FUZZ
@given(which=st.sampled_from(["classes.csv", "split.csv", "parts.csv"]), data=st.one_of(
    CSV_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=100)))
@example(which="classes.csv", data=b"class," + b"a" * 200_000 + b"\nx,1\n")
@example(which="parts.csv", data=b"image,part,x0,y0,x1,y1\nrobin/robin1.jpg,head,1,1,nan,2\n")
def test_load_folder_with_one_arbitrary_csv_raises_only_dataset_error(folder_root, which, data):
    p = folder_root / which
    original = p.read_bytes()
    try:
        _write(p, data)
        try:
            d = load_folder(folder_root, check_images=False)
        except DatasetError as e:
            assert str(e)
        else:
            assert (d.semantics == d.semantics).all()
    finally:
        p.write_bytes(original)


# ---------------------------------------------------------------- user class files
ATTRS = ["crest::yes", "tail_shape::fan", "head_color::blue", "size"]
JSONABLE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                        max_leaves=20)
TOMLABLE = st.recursive(st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=10),
                        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                        max_leaves=20)


def _class_file_ok_or_clear(path: Path, attrs):
    try:
        classes = load_classes(path, attrs)
    except ClassFileError as e:
        assert str(path) in str(e)
    else:
        assert classes and len({c.name for c in classes}) == len(classes)
        for c in classes:
            assert all(math.isfinite(v) for v in c.values.values())
            if attrs is not None:
                assert set(c.values) <= set(attrs)


@needs_classes
@FUZZ
@given(ext=st.sampled_from([".toml", ".json", ".csv"]), data=ANY_BYTES, attrs=st.sampled_from([ATTRS, None]))
def test_class_file_arbitrary_text_raises_only_class_file_error(scratch, ext, data, attrs):
    _class_file_ok_or_clear(_write(scratch / f"classes{ext}", data), attrs)


@needs_classes
@FUZZ
@given(obj=JSONABLE, wrap=st.booleans(), attrs=st.sampled_from([ATTRS, None]))
@example(obj={"a": {"crest::yes": 1e308 * 10}}, wrap=True, attrs=ATTRS)
@example(obj={"a": [1, 2, 3, 4]}, wrap=True, attrs=None)
def test_class_file_arbitrary_json_raises_only_class_file_error(scratch, obj, wrap, attrs):
    text = json.dumps({"classes": obj} if wrap else obj, allow_nan=True)
    _class_file_ok_or_clear(_write(scratch / "classes.json", text), attrs)


@needs_classes
@FUZZ
@given(obj=st.dictionaries(st.text(max_size=10), TOMLABLE, max_size=5), wrap=st.booleans(),
       attrs=st.sampled_from([ATTRS, None]))
def test_class_file_arbitrary_toml_raises_only_class_file_error(scratch, obj, wrap, attrs):
    text = tomli_w.dumps({"classes": obj} if wrap else obj)
    _class_file_ok_or_clear(_write(scratch / "classes.toml", text), attrs)


@needs_classes
@FUZZ
@given(text=st.one_of(ANY_TEXT, st.lists(TOKEN, max_size=6).map(" ".join)))
@example(text="crest::yes = 1\nsize: 2")
@example(text="[1, 2, 3, 4]")
def test_parse_vector_raises_only_class_file_error(text):
    try:
        values = parse_vector(text, ATTRS)
    except ClassFileError as e:
        assert str(e)
    else:
        assert set(values) <= set(ATTRS) and all(math.isfinite(v) for v in values.values())


HOSTILE_CLASS_FILES = [
    ("bigint.json", '{"classes": {"a": {"size": ' + "1" * 5000 + "}}}"),
    ("deep.json", '{"classes": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"),
    ("bigint.toml", "[classes.a]\nsize = " + "1" * 5000 + "\n"),
    ("deep.toml", "[classes]\na = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("hugefield.csv", "name,size\n" + "a" * 200_000 + ",1\n"),
]


@needs_classes
@pytest.mark.parametrize("name, text", HOSTILE_CLASS_FILES, ids=[n for n, _ in HOSTILE_CLASS_FILES])
def test_hostile_class_files_raise_class_file_error(tmp_path, name, text):
    """Python's own parser limits (integer digits, recursion depth, csv field size) must surface as
    a ClassFileError naming the file, not as ValueError / RecursionError / csv.Error."""
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ClassFileError) as e:
        load_classes(p, ATTRS)
    assert str(p) in str(e.value)


# ---------------------------------------------------------------- run configs
FIELD_NAMES = ["name", "model", "train", "data", "backbone", "n_parts", "batch_size", "lr", "warmup", "joint",
               "epochs", "enabled", "kind", "root", "options", "attention_size", "inference", "device",
               "use_parts", "use_image_branch", "part_side_min", "part_side_init", "beta", "seed"]
CONFIG_KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
CONFIG_DICT = st.recursive(
    st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=8) | st.sampled_from(
        ["vgg19", "small_cnn", "combined", "cpu", "synthetic"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(CONFIG_KEYS, c, max_size=5), max_leaves=25)


@FUZZ
@given(data=st.dictionaries(CONFIG_KEYS, CONFIG_DICT, max_size=5))
@example(data={"model": {"n_parts": 0}})
@example(data={"train": {"batch_size": 0}})
@example(data={"model": {"attention_size": 2}})
@example(data={"train": {"warmup": 5}})
@example(data={"model": {"beta": float("nan")}})
@example(data={"inference": {"beta": float("nan")}})
@example(data={"model": {"beta": 1.0}, "inference": {"beta": 2.0}})
def test_from_dict_raises_only_config_error(data):
    try:
        cfg = from_dict(RunConfig, data)
        cfg.validate()
    except ConfigError as e:
        assert str(e)
    else:
        assert isinstance(cfg, RunConfig)


@FUZZ
@given(data=st.one_of(ANY_BYTES, st.dictionaries(CONFIG_KEYS, CONFIG_DICT, max_size=5).map(
    lambda d: tomli_w.dumps(d).encode())))
def test_load_toml_raises_only_config_error(scratch, data):
    p = _write(scratch / "run.toml", data)
    try:
        cfg = load_toml(p)
    except ConfigError as e:
        assert str(p) in str(e)
    else:
        assert isinstance(cfg, RunConfig)


HOSTILE_CONFIGS = [
    ("bigint", "[train]\nseed = " + "1" * 5000 + "\n"),
    ("deep", "[data]\noptions = {a = " + "[" * 100_000 + "]" * 100_000 + "}\n"),
    ("not-utf8", b"name = '\xff'\n"),
]


@pytest.mark.parametrize("name, text", HOSTILE_CONFIGS, ids=[n for n, _ in HOSTILE_CONFIGS])
def test_hostile_config_files_raise_config_error(tmp_path, name, text):
    p = tmp_path / f"{name}.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as e:
        load_toml(p)
    assert str(p) in str(e.value)


def test_config_path_that_is_a_folder_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(tmp_path)


def test_cli_train_with_a_folder_as_config_exits_2(tmp_path, capsys):
    from sgma.engine.cli import main
    assert main(["train", "--config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path) in err and "Traceback" not in err
