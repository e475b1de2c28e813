"""Symbolic links flattened into text files by a copy (the shared cub50_plus arrives so): the image
they name is read; a stand-in whose target is missing is refused with what it holds."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from fixtures_data import make_cub, need_shared
from sgma.engine.data.base import (DatasetError, image_header_sizes, link_stand_in_target, read_image,
                                   resolve_image_path)
from sgma.engine.data.cub import load_cub
from sgma.engine.evaluate import image_sizes
from sgma.engine.image_check import image_problem


def _image(path, size=(24, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def _stand_in(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_stand_in_reads_the_image_it_names(tmp_path):
    pixels = _image(tmp_path / "a" / "bird.png")
    _stand_in(tmp_path / "b" / "c" / "bird.jpg", "../../a/bird.png")
    link = tmp_path / "b" / "c" / "bird.jpg"
    assert link_stand_in_target(link) == str(tmp_path / "a" / "bird.png")
    np.testing.assert_array_equal(np.asarray(read_image(link)), pixels)
    assert image_header_sizes([str(link)]) == [(24, 16)]
    assert image_problem(str(link)) is None


def test_chain_of_stand_ins_is_followed(tmp_path):
    _image(tmp_path / "bird.png", size=(8, 5))
    _stand_in(tmp_path / "one.jpg", "bird.png")
    _stand_in(tmp_path / "d" / "two.jpg", "../one.jpg")
    assert resolve_image_path(tmp_path / "d" / "two.jpg") == str(tmp_path / "bird.png")
    assert read_image(tmp_path / "d" / "two.jpg").size == (8, 5)


def test_stand_in_to_a_missing_file_names_what_it_holds(tmp_path):
    _stand_in(tmp_path / "bird.jpg", "../gone/bird.jpg")
    assert link_stand_in_target(tmp_path / "bird.jpg") is None
    with pytest.raises(DatasetError) as e:
        read_image(tmp_path / "bird.jpg")
    msg = str(e.value)
    assert str(tmp_path / "bird.jpg") in msg and "'../gone/bird.jpg'" in msg and "symbolic link" in msg
    with pytest.raises(DatasetError, match="symbolic link"):
        image_header_sizes([str(tmp_path / "bird.jpg")])
    assert "'../gone/bird.jpg'" in image_problem(str(tmp_path / "bird.jpg"))      # the unreadable-image scan


def test_other_small_files_are_not_stand_ins(tmp_path):
    _image(tmp_path / "bird.png")
    (tmp_path / "binary.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")      # a cut JPEG
    _stand_in(tmp_path / "two_lines.jpg", "bird.png\nbird.png")
    big = "x" * 2000 + "/../bird.png"                                                  # over 1 KiB
    _stand_in(tmp_path / "big.jpg", big)
    for name in ("binary.jpg", "two_lines.jpg", "big.jpg"):
        assert link_stand_in_target(tmp_path / name) is None
        assert resolve_image_path(tmp_path / name) == str(tmp_path / name)
        with pytest.raises(DatasetError) as e:
            read_image(tmp_path / name)
        assert "symbolic link" not in str(e.value)
    assert link_stand_in_target(tmp_path / "missing.jpg") is None


def test_cub_folder_with_stand_ins_loads_and_measures(tmp_path):
    """A CUB copy whose images are link stand-ins into another CUB copy, as cub50_plus into cub50."""
    real = make_cub(tmp_path / "real")
    flat = make_cub(tmp_path / "flat")
    images = flat / "CUB_200_2011" / "images"
    replaced = 0
    for p in sorted(images.rglob("*.jpg"))[::2]:
        target = real / "CUB_200_2011" / "images" / p.relative_to(images)
        p.write_text(os.path.relpath(target, p.parent))
        replaced += 1
    assert replaced > 5
    d = load_cub(flat)
    for i in range(len(d)):
        expect = np.asarray(read_image(real / "CUB_200_2011" / "images" / os.path.relpath(d.items[i].path, images)))
        np.testing.assert_array_equal(np.asarray(d.load_image(i)), expect)
    np.testing.assert_array_equal(image_sizes(d, range(len(d))), np.tile([40.0, 30.0], (len(d), 1)))


def test_shared_cub50_plus_reads_its_cub50_images():
    """The shared copy (skipped when absent): its images shared with cub50 are read from cub50,
    whether they arrived as links or as stand-ins."""
    root = need_shared("cub50_plus")
    cub50 = need_shared("cub50")
    d = load_cub(root, check_images=False)
    shared = [i for i, it in enumerate(d.items)
              if os.path.realpath(resolve_image_path(it.path)).startswith(os.path.realpath(cub50) + os.sep)]
    assert len(shared) == 820
    i = shared[0]
    rel = os.path.relpath(d.items[i].path, root)
    np.testing.assert_array_equal(np.asarray(d.load_image(i)), np.asarray(read_image(cub50 / rel)))
