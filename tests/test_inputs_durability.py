"""Issue 16: durable logs and outputs - tuning log tails and locks, atomic folders,
output paths refused before work, paths a manifest names, strict JSON out."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codegen.tuning_log import TuningLog, read_entries
from models.errors import UserError
from models.fileio import (atomic_folder, check_output_dir, check_output_path, json_text,
                           remove_matching, safe_member_path, write_atomic)

ROOT = Path(__file__).resolve().parents[1]


def _entry(key: str, seconds: float = 1.0) -> str:
    return json.dumps({"key": key, "op_key": "x", "method": "measured", "seconds": seconds})


# ---------------------------------------------------------------- tuning log


def test_last_entry_without_newline_is_kept_when_read(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(_entry("a") + "\n" + _entry("b", 0.5))
    assert [entry["key"] for entry in read_entries(path)] == ["a", "b"]
    log = TuningLog(path)                         # opening (read-only use) changes nothing
    assert path.read_text().endswith("}") and log.best("x")["key"] == "b"


def test_one_entry_log_is_never_truncated(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(_entry("only"))
    log = TuningLog(path)
    assert path.stat().st_size > 0
    log.append(json.loads(_entry("next")))
    assert [entry["key"] for entry in read_entries(path)] == ["only", "next"]
    assert path.read_text().count("\n") == 2


def test_torn_tail_is_cut_only_on_append(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(_entry("a") + "\n" + '{"key": "b", "op')
    log = TuningLog(path)
    assert path.read_text().endswith('"op')       # reading leaves the file alone
    log.append(json.loads(_entry("c")))
    assert [entry["key"] for entry in read_entries(path)] == ["a", "c"]


@pytest.mark.parametrize("text, match", [
    ("[1, 2]\n" + _entry("a") + "\n", "line 1 is a JSON list"),
    ("\xff\xfe garbage\n", "not a text file"),
])
def test_bad_log_lines_are_one_error(tmp_path, text, match):
    path = tmp_path / "log.jsonl"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match=match):
        read_entries(path)


def test_best_skips_entries_without_usable_figures(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [{"key": "a", "op_key": "x", "method": "measured", "seconds": "fast"},
             {"key": "b", "op_key": "x", "method": "measured"},
             {"key": "c", "op_key": "x", "method": "measured", "seconds": 2.0,
              "op": "nmgemm", "params": {"n": "2"}},
             {"key": "d", "op_key": "x", "method": "measured", "seconds": 3.0}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert TuningLog(path).best("x")["key"] == "d"


_TUNER = textwrap.dedent("""
    import sys, time
    from codegen.tuning_log import TuningLog
    log_path, count_path = sys.argv[1], sys.argv[2]
    log = TuningLog(log_path)
    for index in range(8):
        key = f"cand{index}"
        if log.has(key):
            continue
        with open(count_path, "a") as stream:     # one line per measurement made
            stream.write(key + "\\n")
        time.sleep(0.05)                           # the measurement
        log.append({"key": key, "op_key": "x", "method": "measured", "seconds": 1.0})
""")


def test_two_tuners_measure_each_candidate_once(tmp_path):
    log_path, count_path = tmp_path / "log.jsonl", tmp_path / "measured.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tuners = [subprocess.Popen([sys.executable, "-c", _TUNER, str(log_path), str(count_path)],
                               env=env) for _ in range(2)]
    assert [tuner.wait(timeout=60) for tuner in tuners] == [0, 0]
    measured = count_path.read_text().split()
    assert sorted(measured) == [f"cand{index}" for index in range(8)]   # each exactly once
    assert sorted(entry["key"] for entry in read_entries(log_path)) == sorted(measured)


# ---------------------------------------------------------------- outputs


def test_output_paths_are_checked_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad, match in [(tmp_path, "is a directory"), ("/proc/self/x", "kernel filesystem"),
                       (tmp_path / "file" / "out.json", "is a file, not a folder")]:
        with pytest.raises(UserError, match=match):
            check_output_path(bad)
    with pytest.raises(UserError, match="not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(UserError, match="is a directory"):
        write_atomic(str(tmp_path), "x")
    check_output_dir(tmp_path / "new" / "folder")       # not there yet: fine


def test_atomic_folder_replaces_the_whole_set(tmp_path):
    out = tmp_path / "report"
    with atomic_folder(out) as staging:
        for name in ("summary.json", "report.md", "old_plot.png"):
            write_atomic(os.path.join(staging, name), name)
    (out / "notes.txt").write_text("the user's")
    with atomic_folder(out, replaces=("*.png", "*.md", "summary.json")) as staging:
        write_atomic(os.path.join(staging, "summary.json"), "new")
        write_atomic(os.path.join(staging, "new_plot.png"), "new")
    assert sorted(os.listdir(out)) == ["new_plot.png", "notes.txt", "summary.json"]
    assert (out / "notes.txt").read_text() == "the user's"
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")] == []


def test_a_failed_folder_write_leaves_the_old_set(tmp_path):
    out = tmp_path / "report"
    with atomic_folder(out) as staging:
        write_atomic(os.path.join(staging, "summary.json"), "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as staging:
            write_atomic(os.path.join(staging, "summary.json"), "new")
            raise RuntimeError("killed half way")
    assert os.listdir(out) == ["summary.json"] and (out / "summary.json").read_text() == "old"
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")] == []


def test_staging_left_by_a_killed_writer_is_removed(tmp_path):
    out = tmp_path / "report"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".tmp-report-{dead.pid}-abc").mkdir()
    with atomic_folder(out) as staging:
        write_atomic(os.path.join(staging, "summary.json"), "x")
    assert sorted(os.listdir(tmp_path)) == ["report"]


def test_manifest_paths_stay_inside_the_folder(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "k").write_text("")
    assert safe_member_path(tmp_path, "bin/k") == (tmp_path / "bin" / "k").resolve()
    os.symlink("/usr/bin/env", tmp_path / "bin" / "link")
    for bad in ("/usr/bin/env", "../x", "bin/../../x", "bin/link", "", 3):
        with pytest.raises(UserError):
            safe_member_path(tmp_path, bad, source="manifest.json", field="executables")


def test_remove_matching_only_removes_matching_files(tmp_path):
    for name in ("cases-a.txt", "cases-b.txt", "L000.x.bin"):
        (tmp_path / name).write_text("")
    assert remove_matching(tmp_path, "cases-*.txt") == ["cases-a.txt", "cases-b.txt"]
    assert os.listdir(tmp_path) == ["L000.x.bin"]
    assert remove_matching(tmp_path / "missing", "*") == []


def test_json_out_is_strict():
    text = json_text({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == \
        {"a": None, "b": [None, 1.5], "c": {"d": None}}


@pytest.mark.parametrize("how", ["working directory", "holds a subfolder"])
def test_folders_that_cannot_be_swapped_are_updated_in_place(how, tmp_path, monkeypatch):
    out = tmp_path / "here"
    out.mkdir()
    for name in ("summary.json", "old_plot.png", "notes.txt"):
        (out / name).write_text("old")
    if how == "working directory":
        monkeypatch.chdir(out)
    else:
        (out / "runs").mkdir()
    with atomic_folder(out if how != "working directory" else ".",
                       replaces=("summary.json", "*.png")) as staging:
        assert os.path.dirname(staging) == str(out)       # staged inside, not beside
        write_atomic(os.path.join(staging, "summary.json"), "new")
        write_atomic(os.path.join(staging, "new_plot.png"), "new")
    expected = {"summary.json", "new_plot.png", "notes.txt"} | ({"runs"} if how != "working directory"
                                                                else set())
    assert set(os.listdir(out)) == expected
    assert (out / "summary.json").read_text() == "new" and (out / "notes.txt").read_text() == "old"
    assert os.getcwd() == str(out) or how != "working directory"
