"""Atomic writes in _shared/io: the file or folder is the old one or the new one, and nothing is left beside it."""

from __future__ import annotations

import json
import os

import pytest

from components._shared import io


def test_text_bytes_and_json_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "a" / "b.txt"
    io.write_text_atomic("one\n", str(path))
    io.write_text_atomic("two\n", str(path))
    assert path.read_text() == "two\n"
    io.write_bytes_atomic(b"\x00\x01", str(tmp_path / "a" / "c.bin"))
    assert (tmp_path / "a" / "c.bin").read_bytes() == b"\x00\x01"
    io.write_json({"b": 1, "a": [1.5]}, str(tmp_path / "a" / "d.json"))
    assert (tmp_path / "a" / "d.json").read_text() == json.dumps({"a": [1.5], "b": 1}, indent=2) + "\n"
    assert sorted(os.listdir(tmp_path / "a")) == ["b.txt", "c.bin", "d.json"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_path(str(path)) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.csv"]


def test_replace_dir_atomic_replaces_a_folder_or_keeps_it_on_failure(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with pytest.raises(ValueError), io.replace_dir_atomic(str(target)) as tmp:
        with open(os.path.join(tmp, "half.pb"), "w") as fh:
            fh.write("half")
        raise ValueError("export failed")
    assert os.listdir(target) == ["old.pb"]
    with io.replace_dir_atomic(str(target)) as tmp:
        with open(os.path.join(tmp, "new.pb"), "w") as fh:
            fh.write("new")
    assert os.listdir(target) == ["new.pb"]
    assert os.listdir(tmp_path) == ["model"]
