"""files.py: atomic writes (permissions, cleanup on every way out, errors naming the target),
removing what killed writers left behind, and checksummed safetensors files."""

import errno
import io
import os
import re
import stat
import subprocess
import sys
import time

import pytest
import torch
from file_damage import data_offsets, entry_at, flip_bit, one_sentence, set_dtype

from impresslearn import files
from impresslearn.files import CheckpointError, atomic_write, remove_stale_temporaries

# --------------------------------------------------------------------------- atomic_write


@pytest.fixture
def umask():
    """Set the process umask for a test (and restore it)."""
    before = os.umask(0o022)
    os.umask(before)
    yield lambda mask: os.umask(mask)
    os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_open_gives(tmp_path, umask, mask):
    umask(mask)
    atomic_write(tmp_path / "a.bin", b"new")
    with open(tmp_path / "b.bin", "w"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode)
    os.chmod(tmp_path / "a.bin", 0o600)  # replaced, so a new file's mode again
    atomic_write(tmp_path / "a.bin", "again")
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o666 & ~mask
    assert (tmp_path / "a.bin").read_text() == "again"


def test_temporary_names_hold_the_pid(tmp_path, monkeypatch):
    seen = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(os.path.basename(src)), replace(src, dst)))
    atomic_write(tmp_path / "a.bin", b"x")
    (name,) = seen
    assert re.fullmatch(rf"\.tmp-[0-9a-f]{{8}}-{os.getpid()}-[0-9a-f]{{8}}-a\.bin", name), name
    assert os.listdir(tmp_path) == ["a.bin"]


class FullDisk(io.RawIOBase):
    """A file whose writes fail as on a full disk."""

    def __init__(self, fd):
        self.fd = fd

    def writable(self):
        return True

    def write(self, b):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        if not self.closed:
            os.close(self.fd)
        super().close()


class Interrupting(FullDisk):
    def write(self, b):
        raise KeyboardInterrupt


def _fail_with(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(
    "how", ["full disk", "fsync EIO", "replace denied", "interrupt in write", "interrupt in fsync", "interrupt in replace"]
)
def test_failed_saves_leave_the_old_file_and_no_temporary(tmp_path, monkeypatch, how):
    path = tmp_path / "a.safetensors"
    atomic_write(path, b"old")
    if how == "full disk":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(fd))
    elif how == "fsync EIO":
        monkeypatch.setattr(os, "fsync", _fail_with(OSError(errno.EIO, os.strerror(errno.EIO))))
    elif how == "replace denied":

        def denied(src, dst):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), src, dst)

        monkeypatch.setattr(os, "replace", denied)
    elif how == "interrupt in write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Interrupting(fd))
    else:
        monkeypatch.setattr(os, how.split()[-1], _fail_with(KeyboardInterrupt()))
    expected = KeyboardInterrupt if how.startswith("interrupt") else OSError
    with pytest.raises(expected) as info:
        atomic_write(path, b"new" * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.safetensors"]  # no temporary file left behind
    if expected is OSError:
        message = str(info.value)
        assert str(path) in message and ".tmp-" not in message, message
        assert info.value.errno == {"full disk": errno.ENOSPC, "fsync EIO": errno.EIO, "replace denied": errno.EACCES}[how]
        if how == "replace denied":
            assert isinstance(info.value, PermissionError)  # the errno keeps the subclass


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(tmp_path / "no" / "a.bin", b"x")
    assert str(tmp_path / "no" / "a.bin") in str(info.value) and ".tmp-" not in str(info.value)


# --------------------------------------------------------------------------- remove_stale_temporaries


def _temp(folder, target, pid, host=None, age=0.0):
    path = folder / f".tmp-{host or files._host()}-{pid}-{os.urandom(4).hex()}-{target}"
    path.write_bytes(b"partial")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


@pytest.fixture
def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.1)
    yield p.pid
    p.kill()
    p.wait()


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, dead_pid, live_pid):
    dead = _temp(tmp_path, "a.bin", dead_pid)
    own = _temp(tmp_path, "a.bin", os.getpid())  # a writer still running
    alive = _temp(tmp_path, "a.bin", live_pid, age=0)
    reused = _temp(tmp_path, "a.bin", live_pid, age=600)  # that pid's process started after the write
    other = _temp(tmp_path, "b.bin", dead_pid)
    remote_new = _temp(tmp_path, "a.bin", dead_pid, host="ffffffff" if files._host() != "ffffffff" else "eeeeeeee")
    remote_old = _temp(tmp_path, "a.bin", 12, host="ffffffff" if files._host() != "ffffffff" else "eeeeeeee", age=7200)
    legacy_new = tmp_path / ".tmp-k2j_x9q1a.bin"
    legacy_old = tmp_path / ".tmp-zz8_1mq0a.bin"
    unrelated = [tmp_path / "a.bin", tmp_path / ".tmp-notours", tmp_path / ".tmp-a.bin"]
    for p in [legacy_new, legacy_old, *unrelated]:
        p.write_bytes(b"x")
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    (tmp_path / f".tmp-{files._host()}-{dead_pid}-0123abcd-dir").mkdir()  # not a file: left alone

    removed = remove_stale_temporaries(tmp_path, "a.bin")
    assert sorted(removed) == sorted([dead, reused, remote_old, legacy_old])
    left = set(os.listdir(tmp_path))
    assert {p.name for p in (own, alive, other, remote_new, legacy_new, *unrelated)} <= left
    assert not {p.name for p in removed} & left
    # without a target name: every stale temporary of the folder
    assert remove_stale_temporaries(tmp_path) == [other]
    # age never removes a temporary of a running writer; it does those of other hosts and versions
    assert sorted(remove_stale_temporaries(tmp_path, max_age=0)) == sorted([remote_new, legacy_new])
    assert {own.name, alive.name} <= set(os.listdir(tmp_path))
    assert remove_stale_temporaries(tmp_path / "missing") == []


KILLED_WRITER = """
import os, signal, sys
from impresslearn import files
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed mid-save
files.atomic_write(sys.argv[1], b"x" * 1000)
"""


def test_the_leftover_of_a_killed_save_is_removed(tmp_path):
    target = tmp_path / "a.safetensors"
    atomic_write(target, b"old")
    r = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    leftovers = [p for p in os.listdir(tmp_path) if p != "a.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    assert remove_stale_temporaries(tmp_path, "a.safetensors") == [tmp_path / leftovers[0]]
    assert os.listdir(tmp_path) == ["a.safetensors"] and target.read_bytes() == b"old"


@pytest.mark.parametrize("length", [221, 227, 240, 255])
def test_names_up_to_the_file_system_limit_are_saved_and_cleaned(tmp_path, length):
    # The temporary's prefix must not push a long name past the 255-byte limit; a killed save
    # of such a name is still found (and only for its own target) by remove_stale_temporaries.
    name = ("é" * length)[: length // 2] + "x" * (length % 2)  # 2 bytes a character: a cut may split one
    assert len(os.fsencode(name)) == length
    target = tmp_path / name
    atomic_write(target, b"data")
    assert target.read_bytes() == b"data" and os.listdir(tmp_path) == [name]
    r = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    (leftover,) = [p for p in os.listdir(tmp_path) if p != name]
    assert len(os.fsencode(leftover)) <= 255
    assert remove_stale_temporaries(tmp_path, "z" + name[1:]) == []
    assert remove_stale_temporaries(tmp_path, name) == [tmp_path / leftover]
    assert target.read_bytes() == b"data"


# --------------------------------------------------------------------------- checksummed files

KEY = "test-kind"


def _file():
    tensors = {
        "a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": torch.tensor([1, -2, 3], dtype=torch.int32),
        "empty": torch.zeros(0),
    }
    return tensors, files.safetensors_bytes(tensors, KEY, {"format_version": 2, "x": 1})


def _read(data, legacy=(1,)):
    return files.read_verified(data, "f.safetensors", "test file", KEY, (1, 2), legacy=legacy)


def test_checksums_round_trip_and_catch_flipped_bits():
    tensors, data = _file()
    header, back = _read(data)
    assert header["x"] == 1 and set(header[files.CHECKSUMS]) == {"a", "b", "empty"}
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    for offset in data_offsets(data):
        for bit in (0, 7):
            with pytest.raises(CheckpointError) as info:
                _read(flip_bit(data, offset, bit))
            message = str(info.value)
            assert "f.safetensors" in message and repr(entry_at(data, offset)) in message and one_sentence(message)


def test_checksums_cover_dtypes_and_the_header():
    _, data = _file()
    with pytest.raises(CheckpointError, match="entry 'a' does not match its SHA-256"):
        _read(set_dtype(data, "a", "I32"))
    edited = data.replace(b'\\"x\\": 1', b'\\"x\\": 7')
    assert edited != data
    with pytest.raises(CheckpointError, match="its header does not match its SHA-256"):
        _read(edited)


def test_the_header_digest_does_not_depend_on_the_caller_header():
    header = {"format_version": 2}
    files.safetensors_bytes({"a": torch.zeros(1)}, KEY, header)
    assert header == {"format_version": 2}  # not changed in place


# --------------------------------------------------------------------------- readers that trust no path


def _hostile_paths(tmp_path):
    """A FIFO (opening it for reading would wait for a writer), a link to /dev/zero (endless),
    a sparse file of 64 GiB (reading it would fill the memory) and a folder."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.safetensors"
    zero.symlink_to("/dev/zero")
    sparse = tmp_path / "sparse.safetensors"
    with open(sparse, "wb") as f:
        f.write((16).to_bytes(8, "little") + b'{"__metadata__":{}}'[:16])
        f.truncate(64 * 2**30)
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    return {"fifo": fifo, "zero": zero, "sparse": sparse, "folder": folder}


def test_every_reader_refuses_what_is_not_a_file_of_its_declared_size(tmp_path):
    import impresslearn as il
    from impresslearn.continual.basis_file import load_basis
    from impresslearn.continual.resume import FileCheckpoint, load_state
    from impresslearn.experiments.tables import load_results

    model = il.convert(torch.nn.Sequential(torch.nn.Linear(4, 3)), "supermask")
    readers = {
        "checkpoint": lambda p: il.load_checkpoint(p, model),
        "basis": load_basis,
        "state": load_state,
        "unit": lambda p: FileCheckpoint(p).load(),
        "results": load_results,
    }
    for kind, path in _hostile_paths(tmp_path).items():
        for name, read in readers.items():
            start = time.time()
            with pytest.raises(ValueError, match=r"not a regular file|is a folder|truncated or corrupt|more than"):
                read(path)
            assert time.time() - start < 5, (kind, name)  # refused at once, nothing read


def test_writers_refuse_to_replace_what_is_not_a_regular_writable_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    null_link = tmp_path / "null"
    null_link.symlink_to("/dev/null")
    locked = tmp_path / "locked.json"
    locked.write_text("keep me")
    locked.chmod(0o444)
    for path, error in ((fifo, FileExistsError), (null_link, FileExistsError), (locked, PermissionError)):
        with pytest.raises(error, match="not replaced"):
            files.atomic_write(path, b"new")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.islink(null_link) and locked.read_text() == "keep me"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(files.TEMP_PREFIX)]
