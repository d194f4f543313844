"""The result sink: durable appends, keyed resume, cut lines, the output lock, atomic rewrites."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlground.io.sink import (JsonlSink, OutputExistsError, OutputLock, OutputLockedError, atomic_write,
                           atomic_write_records, encode_line)


def _key(record: dict) -> str:
    return record["id"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


def test_resume_reads_done_keys_later_records_win_and_a_cut_line_is_removed(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlSink(out, _key) as sink:
        sink.write({"id": "a", "v": 1})
        sink.write({"id": "b", "v": 1})
        sink.write({"id": "a", "v": 2})  # a retried input: compacted away on close, in place of the first
    assert _lines(out) == [{"id": "a", "v": 2}, {"id": "b", "v": 1}]
    with open(out, "ab") as handle:
        handle.write(b'{"other": true}\n{"id": "c", "v"')  # a foreign line, then a line cut by a kill
    with JsonlSink(out, _key, resume=True) as sink:
        assert sink.done == {"a": {"id": "a", "v": 2}, "b": {"id": "b", "v": 1}}
        sink.write({"id": "c", "v": 3})
    assert [r.get("id") for r in _lines(out)] == ["a", "b", None, "c"]


def test_an_existing_output_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlSink(out, _key) as sink:
        sink.write({"id": "a"})
    with pytest.raises(OutputExistsError, match="--resume"):
        JsonlSink(out, _key)
    with pytest.raises(ValueError, match="exclude each other"):
        JsonlSink(out, _key, resume=True, overwrite=True)
    with JsonlSink(out, _key, overwrite=True) as sink:
        assert sink.done == {}
        sink.write({"id": "b"})
    assert _lines(out) == [{"id": "b"}]
    with pytest.raises(IsADirectoryError, match="--labels takes a file name"):
        JsonlSink(tmp_path, _key, flag="--labels")


def test_a_second_writer_is_refused_naming_the_first_and_the_lock_goes_with_it(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlSink(out, _key) as first:
        first.write({"id": "a"})
        with pytest.raises(OutputLockedError) as refused:
            JsonlSink(out, _key, resume=True)
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started 20" in message
        assert (tmp_path / "r.jsonl.lock").exists()
    assert not (tmp_path / "r.jsonl.lock").exists()
    with JsonlSink(out, _key, resume=True) as again:  # free once the first has closed
        assert set(again.done) == {"a"}


_HOLD = """
import sys, time
from vlground.io.sink import JsonlSink
sink = JsonlSink(sys.argv[1], lambda r: r["id"])
sink.write({"id": "a"})
print("locked", flush=True)
time.sleep(60)
"""


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid} on host"):
            JsonlSink(out, _key, resume=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "r.jsonl.lock").exists()  # left behind by the kill
    with JsonlSink(out, _key, resume=True) as sink:
        assert sink.lock.previous["pid"] == holder.pid and set(sink.done) == {"a"}


def test_lines_are_utf8_json_even_with_lone_surrogates(tmp_path):
    out = tmp_path / "r.jsonl"
    with JsonlSink(out, _key) as sink:
        sink.write({"id": "café"})
        sink.write({"id": "bad\udcffname.png"})
    raw = out.read_bytes()
    raw.decode("utf-8")  # strict: every line is valid UTF-8
    assert b"caf\xc3\xa9" in raw and b"\\udcff" in raw
    with JsonlSink(out, _key, resume=True) as sink:
        assert set(sink.done) == {"café", "bad\udcffname.png"}
    assert encode_line({"a": 1}) == b'{"a": 1}\n'


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "p.jsonl"
    target.write_text("old\n")

    def broken():
        yield b"new\n"
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken())
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["p.jsonl"]  # no temporary left
    atomic_write_records(target, [{"id": "x"}, {"id": "y"}])
    assert _lines(target) == [{"id": "x"}, {"id": "y"}]


_SLOW_REWRITE = """
import sys, time
from vlground.io.sink import atomic_write_records
def records():
    for index in range(1000):
        if index == 10:
            print("midway", flush=True)
            time.sleep(60)
        yield {"id": index}
atomic_write_records(sys.argv[1], records())
"""


def test_a_kill_during_a_rewrite_keeps_every_old_record(tmp_path):
    target = tmp_path / "p.jsonl"
    atomic_write_records(target, ({"id": i} for i in range(500)))
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_REWRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "midway"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert [r["id"] for r in _lines(target)] == list(range(500))


def test_lock_refusal_between_processes_is_immediate(tmp_path):
    out = tmp_path / "r.jsonl"
    lock = OutputLock(out)
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", _HOLD, str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "OutputLockedError" in result.stderr
        assert f"pid {os.getpid()}" in result.stderr and time.monotonic() - started < 30
    finally:
        lock.release()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_honours_the_umask_and_keeps_an_existing_files_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "report.json", "{}")
        atomic_write_records(tmp_path / "r.jsonl", [{"id": "x"}])
        with JsonlSink(tmp_path / "s.jsonl", _key) as sink:
            sink.write({"id": "x"})
    finally:
        os.umask(old)
    for name in ("report.json", "r.jsonl", "s.jsonl"):  # what a plain open() would give, for every writer
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    (tmp_path / "report.json").chmod(0o640)
    atomic_write(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o640  # a rewrite keeps what the owner chose


def test_resume_counts_repeats_already_in_the_file_and_close_compacts_them(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 1}\n{"id": "a", "v": 2}\n')  # a retried by a killed run
    with JsonlSink(out, _key, resume=True) as sink:
        assert sink.superseded == 1
    assert _lines(out) == [{"id": "a", "v": 2}, {"id": "b", "v": 1}]


def test_compaction_keeps_lines_that_name_no_key_where_they_were(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "a", "v": 1}\n{"note": "foreign"}\nnot json\n{"id": "b", "v": 1}\n')
    with JsonlSink(out, lambda r: r.get("id"), resume=True) as sink:
        sink.write({"id": "a", "v": 2})
    assert out.read_text().splitlines() == ['{"id": "a", "v": 2}', '{"note": "foreign"}', "not json", '{"id": "b", "v": 1}']


def test_every_record_is_fsynced_before_write_returns(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    with JsonlSink(tmp_path / "r.jsonl", _key) as sink:
        for i in range(3):
            before = synced.count(sink._fd)
            sink.write({"id": str(i)})
            assert synced.count(sink._fd) == before + 1


def test_a_run_that_fails_before_its_first_record_leaves_no_empty_output(tmp_path):
    with pytest.raises(ConnectionError):
        with JsonlSink(tmp_path / "new.jsonl", _key):
            raise ConnectionError("the cluster is not there")
    assert os.listdir(tmp_path) == []
    (tmp_path / "kept.jsonl").write_text("")  # a file the user had stays, empty or not
    with pytest.raises(ConnectionError):
        with JsonlSink(tmp_path / "kept.jsonl", _key):
            raise ConnectionError("the cluster is not there")
    assert os.listdir(tmp_path) == ["kept.jsonl"]
