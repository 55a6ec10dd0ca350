"""The Raft peer's state file (storage.py): two slots written in place, each checked by its CRC,
so that a save is one small data write and a torn one never loses the state saved before it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from DistributedMutex.backends.raft.core import HardState
from DistributedMutex.backends.raft.storage import SLOT, StateFile


def test_saves_and_loads_back_the_newest_state(tmp_path: Path) -> None:
    state = StateFile(tmp_path, "a")
    assert state.load() == HardState()
    for term, vote in [(3, "b"), (4, None), (4, "c"), (5, "a")]:
        state.save(HardState(term, vote))
        assert StateFile(tmp_path, "a").load() == HardState(term, vote), "another reader sees each save at once"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"], "no temporary file left behind"


def test_a_save_after_the_first_is_written_in_place(tmp_path: Path) -> None:
    """The same file (inode) and size: no create, no rename, no directory fsync on the vote's path."""
    state = StateFile(tmp_path, "a")
    state.load()
    state.save(HardState(1, "a"))
    first = os.stat(tmp_path / "a.json")
    for term in range(2, 6):
        state.save(HardState(term, "b"))
    after = os.stat(tmp_path / "a.json")
    assert (after.st_ino, after.st_size) == (first.st_ino, first.st_size) == (first.st_ino, 2 * SLOT)


def test_a_torn_newest_slot_falls_back_to_the_state_saved_before(tmp_path: Path) -> None:
    state = StateFile(tmp_path, "a")
    state.load()
    state.save(HardState(6, "b"))
    state.save(HardState(7, "c"))  # the newest: into the other slot
    data = bytearray((tmp_path / "a.json").read_bytes())
    newest = max(range(2), key=lambda i: json.loads(data[i * SLOT:(i + 1) * SLOT].split(b" ")[0])["n"])
    # A crash mid-write: the term's digit written, the rest of the record not yet.
    start = newest * SLOT
    data[start:start + 20] = data[start:start + 20].replace(b'"term":7', b'"term":9')
    (tmp_path / "a.json").write_bytes(bytes(data))
    assert StateFile(tmp_path, "a").load() == HardState(6, "b")


def test_the_slot_overwritten_is_never_the_newest_durable_one(tmp_path: Path) -> None:
    """A failed save (the disk refused) is retried into the same slot: the other keeps the last
    state that did reach the disk, whatever the retry leaves behind."""
    state = StateFile(tmp_path, "a")
    state.load()
    state.save(HardState(2, "a"))
    state.save(HardState(3, "b"))
    durable = (tmp_path / "a.json").read_bytes()
    # The disk refuses the next save: a directory where the file was (EISDIR on open, even for root).
    (tmp_path / "a.json").rename(tmp_path / "aside")
    (tmp_path / "a.json").mkdir()
    with pytest.raises(OSError):
        state.save(HardState(4, "c"))
    (tmp_path / "a.json").rmdir()
    (tmp_path / "aside").rename(tmp_path / "a.json")
    assert (tmp_path / "a.json").read_bytes() == durable
    state.save(HardState(4, "c"))
    after = (tmp_path / "a.json").read_bytes()
    changed = [i for i in range(2) if after[i * SLOT:(i + 1) * SLOT] != durable[i * SLOT:(i + 1) * SLOT]]
    assert len(changed) == 1
    assert b'"term":3' in durable[(1 - changed[0]) * SLOT:(2 - changed[0]) * SLOT], "the newest durable slot stayed"
    assert StateFile(tmp_path, "a").load() == HardState(4, "c")


def test_the_single_object_of_earlier_versions_is_read_and_converted(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"term": 12, "voted_for": "c"}))
    state = StateFile(tmp_path, "a")
    assert state.load() == HardState(12, "c")
    state.save(HardState(13, None))
    assert os.path.getsize(tmp_path / "a.json") == 2 * SLOT
    assert StateFile(tmp_path, "a").load() == HardState(13, None)


def test_both_slots_torn_is_refused_not_reset(tmp_path: Path) -> None:
    state = StateFile(tmp_path, "a")
    state.load()
    state.save(HardState(2, "a"))
    state.save(HardState(3, "b"))
    (tmp_path / "a.json").write_bytes(b"x" * (SLOT - 1) + b"\n" + b"y" * (SLOT - 1) + b"\n")
    with pytest.raises(ValueError, match=r"a\.json is not a Raft state file \(no intact record in either slot\)"):
        StateFile(tmp_path, "a").load()


def test_an_overlong_vote_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"term": 1, "voted_for": "v" * 5000}))
    with pytest.raises(ValueError, match="impossible vote"):
        StateFile(tmp_path, "a").load()
