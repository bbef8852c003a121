"""File I/O every writer and reader of the library shares: atomic writes, and safetensors files
with a versioned JSON header under a metadata key of their own, checksummed (docs/design.md §3.2).

Checkpoints, basis files, training states and results files all go through here, so they are
written the same way (beside the target under a temporary name, flushed, then renamed over it: a
reader never sees half a file) and refused the same way (`CheckpointError`, a sentence naming the
file and the entry).

    atomic_write(path, data)                   write through a temporary file and a rename
    remove_stale_temporaries(folder, name)     remove what killed writers left behind
    safetensors_bytes(tensors, key, header)    tensors + JSON header, with SHA-256 checksums
    read_verified(data, name, what, key, ...)  (header, tensors), version and checksums checked
    read_safetensors / read_header / verify_checksums    the steps of read_verified
    check_entries / check_tensor               the readers' checks of names, shapes and dtypes
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class CheckpointError(ValueError):
    """A file that is not one this version can read, or one that does not fit the model."""


# --------------------------------------------------------------------------- atomic writes

TEMP_PREFIX = ".tmp-"
# .tmp-<host>-<pid>-<random>-<target>: host is a hash of the host name and the pid namespace, so
# that the pid can be checked for liveness by the processes that can see it.
_TEMP_NAME = re.compile(r"^\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}-(?P<target>.+)$")
# What tempfile.mkstemp(prefix=".tmp-", suffix=<target>) made before the pid was in the name.
_LEGACY_TEMP_NAME = re.compile(r"^\.tmp-[a-z0-9_]{8}(?P<target>.+)$")
_host_token: str | None = None

NAME_BYTES = 255  # the longest file name of the common file systems
# A file name holds at most NAME_BYTES bytes; the temporary's prefix takes at
# most 5 + 8 + 1 + 10 + 1 + 8 + 1 = 34 of them, so the target's name is cut to the rest: a target
# whose own name is 222-255 bytes long can still be saved.
_TEMP_TARGET_BYTES = NAME_BYTES - 34


def _temp_target(name: str) -> str:
    """The target's name as its temporaries carry it: cut to fit the file-name limit."""
    return os.fsdecode(os.fsencode(name)[:_TEMP_TARGET_BYTES])


def _host() -> str:
    """8 hex digits naming this host and pid namespace (a container's pids are its own)."""
    global _host_token
    if _host_token is None:
        try:
            namespace = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            namespace = 0
        _host_token = hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:8]
    return _host_token


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), where /proc tells; else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5): starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_alive(pid: int, mtime: float) -> bool:
    """Whether the process that wrote a temporary file last modified at `mtime` may still run:
    pid `pid` exists and did not start after that write (then it is a later process that got
    the same pid). In doubt, True."""
    if pid <= 0 or os.name != "posix":
        return True  # no cheap liveness check: only age removes such files
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # PermissionError: alive, another user's
    start = _process_start(pid)
    # btime has a resolution of a second and starttime of a clock tick: allow for both.
    return start is None or start <= mtime + 2.0


def _naming(err: OSError, path: str) -> OSError:
    """`err` again (same errno, hence the same OSError subclass), naming `path` and not the
    temporary file it happened to."""
    if err.errno is None:
        return OSError(f"could not save {path}: {err}")
    return OSError(err.errno, f"could not save {path}: {err.strerror}")


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _check_replaceable(path: str) -> None:
    """A rename would put a regular file where a pipe, a device (`/dev/null`), a socket or a
    read-only file is, whatever it was: refused instead (an OSError naming `path`)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"{path} exists and is not a regular file (a folder, a pipe, a device or a socket): it is not replaced"
        )
    if not st.st_mode & 0o222:
        raise PermissionError(errno.EACCES, f"{path} is read-only: it is not replaced")


def check_writable(path: str | os.PathLike) -> None:
    """What `atomic_write(path, ...)` would refuse, refused now (before the work whose result it
    is for): a missing folder, or a path that is not a regular writable file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"cannot write {path}: the folder {folder} does not exist")
    if len(os.fsencode(os.path.basename(path))) > NAME_BYTES:
        raise OSError(errno.ENAMETOOLONG, f"cannot write {path}: its name is longer than {NAME_BYTES} bytes")
    _check_replaceable(path)
    if not os.access(folder, os.W_OK):
        raise PermissionError(errno.EACCES, f"cannot write {path}: the folder {folder} is not writable")


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file gets the permissions `open(path, "w")` gives a new file (0o666 less the umask). The
    temporary file, `.tmp-<host>-<pid>-<random>-<name>`, is removed on every way out (errors,
    KeyboardInterrupt); a killed process leaves it, for `remove_stale_temporaries`. An OSError
    names `path` and keeps its errno (so its subclass: PermissionError, FileNotFoundError, ...).
    """
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    _check_replaceable(path)
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(
            directory, f"{TEMP_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}-{_temp_target(os.path.basename(path))}"
        )
        try:
            fd = os.open(tmp, flags, 0o666)  # the mode open() uses: the umask applies
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _naming(err, path) from None
    else:
        raise FileExistsError(f"could not save {path}: no free temporary name beside it")
    try:
        with os.fdopen(fd, "wb") as f:
            fd = -1  # the file object owns it now
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        _discard(tmp)
        if isinstance(err, OSError):
            raise _naming(err, path) from None
        raise


def remove_stale_temporaries(folder: str | os.PathLike, target_name: str | None = None, *, max_age: float = 3600.0) -> list[Path]:
    """Remove the temporary files that `atomic_write`s killed mid-save left in `folder`.

    Only files named as `atomic_write` names them are considered (those of `target_name` only, if
    given), in `folder` itself (no recursion). One is removed when it is stale:

    - written by a process of this host and pid namespace: when that process is gone (no process
      has its pid, or the one that has it started after the file's last write); a running
      writer's file is never removed, however old;
    - written on another host or namespace, or by an older impresslearn (no pid in the name):
      when it was last modified more than `max_age` seconds ago.

    Returns the paths removed. A missing folder has nothing to remove.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        m = _TEMP_NAME.match(entry.name)
        legacy = None if m else _LEGACY_TEMP_NAME.match(entry.name)
        found = m or legacy
        if found is None or (target_name is not None and found["target"] != _temp_target(target_name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if m and m["host"] == _host():
                stale = not _writer_alive(int(m["pid"]), mtime)
            else:
                stale = now - mtime > max_age
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
    return removed


# --------------------------------------------------------------------------- checksummed safetensors

CHECKSUMS = "sha256"  # the header field holding {tensor name: digest}
HEADER_CHECKSUM = ".sha256"  # metadata[key + this]: the digest of the header's JSON text


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and raw bytes (as safetensors stores them)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype} {list(t.shape)}\n".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], key: str, header: dict, *, checksums: bool = True) -> bytes:
    """Tensors (detached, on the CPU, contiguous) and `header` as JSON under metadata `key`.

    With `checksums`, the header (a copy; `header` itself is not changed) gets the field "sha256",
    {name: `tensor_digest`}, and the metadata gets `key + ".sha256"`, the digest of the header's
    JSON text: every byte a reader uses is covered.
    """
    blob = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    header = dict(header)
    if checksums:
        header[CHECKSUMS] = {name: tensor_digest(t) for name, t in blob.items()}
    text = json.dumps(header)
    metadata = {key: text}
    if checksums:
        metadata[key + HEADER_CHECKSUM] = hashlib.sha256(text.encode()).hexdigest()
    return st_save(blob, metadata=metadata)


# The most a safetensors header may take (names, shapes, checksums of a few thousand tensors need
# well under a MiB) and the most a JSON results file may: larger ones are refused unread.
MAX_HEADER_BYTES = 64 * 2**20
MAX_JSON_BYTES = 256 * 2**20


def _open_regular(path: str | os.PathLike, what: str) -> tuple[int, int]:
    """(fd, size) of `path` opened for reading, after checking it is a regular file: a FIFO, a
    device (`/dev/zero`), a socket or a folder is refused before a byte is read (opened
    non-blocking, so that opening a FIFO cannot wait for a writer)."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, a device or a socket)"
        raise CheckpointError(f"{name} is {kind}, not a {what}")
    return fd, st.st_size


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 2**26))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_safetensors_file(path: str | os.PathLike, what: str = "safetensors file") -> bytes:
    """The bytes of a safetensors file, read only after its own header says how long it is: the
    file must be regular and exactly `8 + header + data` bytes, the data's end taken from the
    header's offsets; anything else (a huge sparse file, a truncated one) is refused unread."""
    name = os.fspath(path)
    fd, size = _open_regular(path, what)
    try:
        head = _read_exactly(fd, 8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(
                f"{name} is not a readable {what} (truncated or corrupt?): its header length does not fit its {size} bytes"
            )
        header_bytes = _read_exactly(fd, n)
        try:
            header = json.loads(header_bytes)
            end = max([0] + [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise CheckpointError(f"{name} is not a readable {what} (truncated or corrupt?): {err}") from None
        if 8 + n + end != size:
            raise CheckpointError(
                f"{name} is not a readable {what} (truncated or corrupt?): its header declares "
                f"{8 + n + end} bytes, the file has {size}"
            )
        return head + header_bytes + _read_exactly(fd, end)
    finally:
        os.close(fd)


def read_text_file(path: str | os.PathLike, what: str = "results file", limit: int = MAX_JSON_BYTES) -> str:
    """A regular file's text, refused unread when larger than `limit` bytes."""
    name = os.fspath(path)
    fd, size = _open_regular(path, what)
    try:
        if size > limit:
            raise CheckpointError(f"{name} is {size:,} bytes, more than a {what} can be ({limit:,})")
        return _read_exactly(fd, size).decode("utf-8")
    finally:
        os.close(fd)


def read_safetensors(data: bytes, name: str = "data", what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the string metadata of safetensors bytes; CheckpointError if damaged."""
    try:
        tensors = st_load(data)
        # The safetensors layout: an 8-byte little-endian header length, then the JSON header.
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("the metadata is not a JSON object")
        return tensors, meta
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{name} is not a readable {what} (truncated or corrupt?): {err}") from err


def read_header(
    meta: Mapping[str, str], key: str, version: int | Collection[int], name: str, what: str, field: str = "format_version"
) -> dict:
    """The JSON header under `key` of a file's metadata, after checking it holds one of the
    format versions `version` (an int or a collection of them)."""
    versions = {version} if isinstance(version, int) else set(version)
    if key not in meta:
        raise CheckpointError(f"{name} is a safetensors file but not an impresslearn {what}")
    try:
        header = json.loads(meta[key])
    except ValueError as err:
        raise CheckpointError(f"{what} {name} has a header that is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{what} {name} has a header that is not a JSON object")
    found = header.get(field)
    if isinstance(found, bool) or found not in versions:
        readable = " and ".join(str(v) for v in sorted(versions))
        raise CheckpointError(
            f"{name} has {what} format version {found}; "
            f"this impresslearn reads version{'s' if len(versions) > 1 else ''} {readable}"
        )
    return header


def verify_checksums(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], key: str, header: Mapping, name: str, what: str
) -> None:
    """Check the header's digest and every tensor's against the file's bytes (CheckpointError
    naming the first entry that differs); a file without them is refused."""
    expected = meta.get(key + HEADER_CHECKSUM)
    sums = header.get(CHECKSUMS)
    if not isinstance(expected, str) or not isinstance(sums, dict):
        raise CheckpointError(f"{what} {name} lacks the checksums its format version requires")
    if hashlib.sha256(meta[key].encode()).hexdigest() != expected:
        raise CheckpointError(f"{what} {name} is damaged: its header does not match its SHA-256 checksum")
    for entry in sorted(tensors):
        if entry not in sums:
            raise CheckpointError(f"{what} {name} has an entry {entry!r} that its checksums do not list")
    for entry in sorted(sums):
        if entry not in tensors:
            raise CheckpointError(f"{what} {name} lacks entry {entry!r}, which its checksums list")
        if tensor_digest(tensors[entry]) != sums[entry]:
            raise CheckpointError(f"{what} {name} is damaged: entry {entry!r} does not match its SHA-256 checksum")


def read_verified(
    data: bytes,
    name: str,
    what: str,
    key: str,
    versions: Collection[int],
    *,
    legacy: Collection[int] = (),
    field: str = "format_version",
) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a file of kind `what`: readable, one of `versions`, and, unless its
    version is one of the `legacy` ones (written before checksums), matching its checksums."""
    tensors, meta = read_safetensors(data, name, what)
    header = read_header(meta, key, versions, name, what, field)
    if header[field] not in legacy:
        verify_checksums(tensors, meta, key, header, name, what)
    return header, tensors


# --------------------------------------------------------------------------- entry checks


def check_entries(tensors: Mapping[str, torch.Tensor], expected: Iterable[str], name: str, what: str) -> None:
    """CheckpointError unless the file's entries are exactly `expected` (the first missing one,
    else the first unexpected one, is named). The sentence names "`what` `name`" (`name` alone
    where `what` is empty)."""
    subject = f"{what} {name}" if what else name
    expected = set(expected)
    for problem, names in (("lacks entry", expected - set(tensors)), ("has an unexpected entry", set(tensors) - expected)):
        if names:
            first, *rest = sorted(names)
            more = f" (and {len(rest)} more)" if rest else ""
            raise CheckpointError(f"{subject} {problem} {first!r}{more}")


def check_tensor(
    t: torch.Tensor,
    entry: str,
    name: str,
    what: str,
    *,
    dtype: torch.dtype | None = None,
    floating: bool = False,
    shape: Iterable[int] | None = None,
) -> None:
    """CheckpointError unless entry `entry` has `dtype` (or a floating dtype) and `shape`."""
    subject = f"{what} {name}" if what else name
    if dtype is not None and t.dtype != dtype:
        raise CheckpointError(f"{subject} has entry {entry!r} of dtype {t.dtype} where {dtype} is expected")
    if floating and not t.is_floating_point():
        raise CheckpointError(f"{subject} has entry {entry!r} of dtype {t.dtype} where a floating dtype is expected")
    if shape is not None and list(t.shape) != [int(s) for s in shape]:
        raise CheckpointError(
            f"{subject} has entry {entry!r} of shape {list(t.shape)} where {[int(s) for s in shape]} is expected"
        )
