"""Atomic writes: a reader sees the old file or the new one, never a part; a failed write
leaves no temporary behind."""

from __future__ import annotations

import pytest

from explorer.storage import atomic_path, atomic_write_json, read_json


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "deep" / "er" / "state.json"
    atomic_write_json(target, {"epoch": 1})
    atomic_write_json(target, {"epoch": 2})
    assert read_json(target) == {"epoch": 2}
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_read_json_of_a_missing_or_damaged_file_is_the_default(tmp_path):
    (tmp_path / "bad.json").write_text("{ half")
    assert read_json(tmp_path / "bad.json", {}) == {}
    assert read_json(tmp_path / "none.json") is None
