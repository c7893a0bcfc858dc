"""Taking CDR files from an SFTP landing folder (DESIGN §7, file exchange): which names may be taken at all, which
files have settled, fetching one with its content hash, and moving it to ``processed/`` or ``error/`` beside it.

Works on an open ``paramiko.SFTPClient`` (``TunedSFTPHook.get_conn()``), so the same code runs against the
sandbox's SFTP server and a real OpenSSH sshd.
"""
from __future__ import annotations

import hashlib
import logging
import posixpath
import stat
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledgerlink.errors import BadInputError
from ledgerlink.sftp import tuned_sftp_get
from ledgerlink.usage.profiles import FileProfile, profile_for

log = logging.getLogger(__name__)

PROCESSED, ERROR = "processed", "error"
CHECKSUM_SUFFIX = ".sha256"
MAX_NAME_BYTES = 255  # what ext4, XFS, NTFS (in UTF-16 units, fewer) and APFS hold in one name
# Names Windows cannot hold as files whatever their extension (a landing folder may be a share).
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    mtime: int


def hostile_name_reason(name: str) -> str | None:
    """Why a name from a listing must not be taken (None: it is a plain file name). A taken name becomes a path
    in the local landing folder and on the server: nothing that could leave either folder, or that a disk cannot
    hold, gets that far."""
    if name in ("", ".", ".."):
        return "not a file name"
    if "/" in name or "\\" in name:
        return "holds a path separator (a name that could leave the landing folder)"
    if name.startswith(("-", "~")) or (len(name) > 1 and name[1] == ":"):
        return "starts like an option, a home folder or a drive"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return "holds control or invisible characters"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes (no disk holds it)"
    if name.split(".")[0].upper() in _WINDOWS_DEVICES or name.endswith((" ", ".")):
        return "a name Windows cannot hold"
    return None


def landing_path(landing_dir: Path, name: str) -> Path:
    """Where a fetched file goes: inside ``landing_dir``, whatever the name (refused if it would not be)."""
    reason = hostile_name_reason(name)
    if reason is None:
        root = landing_dir.resolve()
        path = (root / name).resolve()
        if path.parent == root:
            return path
        reason = "it leaves the landing folder"
    raise BadInputError(repr(name), f"refused as a file name: {reason}")


@dataclass(frozen=True)
class Listing:
    candidates: list[tuple[RemoteFile, FileProfile]]  # data files a profile covers, safe names
    hostile: list[tuple[str, str]]  # (name as listed, why it is refused): left where they are
    undeclared: list[str]  # files no profile covers: left where they are
    checksums: dict[str, str]  # data file name -> the checksum file's name


def list_landing(sftp, folder: str, profiles: Sequence[FileProfile]) -> Listing:
    """One listing of the landing folder: data files by profile, hostile and undeclared names apart. Folders,
    hidden names (uploads in progress, ``.name.part``) and checksum files are not candidates."""
    candidates, hostile, undeclared, checksums = [], [], [], {}
    for entry in sorted(sftp.listdir_attr(folder), key=lambda e: e.filename):
        name = entry.filename
        reason = hostile_name_reason(name)
        if reason:
            hostile.append((name, reason))
            continue
        if entry.st_mode is not None and not stat.S_ISREG(entry.st_mode):
            continue
        if name.startswith("."):
            continue
        if name.endswith(CHECKSUM_SUFFIX):
            checksums[name[: -len(CHECKSUM_SUFFIX)]] = name
            continue
        profile = profile_for(name, profiles)
        if profile is None:
            undeclared.append(name)
            continue
        candidates.append((RemoteFile(name, entry.st_size, entry.st_mtime), profile))
    for name, reason in hostile:
        log.warning("Left on the server, not taken: %r %s", name, reason)
    return Listing(candidates, hostile, undeclared, checksums)


def settled(sftp, folder: str, listing: Listing, *, settle_seconds: float,
            sleep: Callable[[float], None] = time.sleep) -> tuple[list[tuple[RemoteFile, FileProfile]], list[str]]:
    """The candidates whose size and time did not change over ``settle_seconds`` (and whose checksum file, where
    their profile requires one, is there); and the names still growing or waiting for a checksum (taken by a
    later run)."""
    if settle_seconds > 0 and listing.candidates:
        sleep(settle_seconds)
    now = {e.filename: e for e in sftp.listdir_attr(folder)}
    steady, waiting = [], []
    for remote, profile in listing.candidates:
        again = now.get(remote.name)
        if again is None:
            continue  # gone (another taker, or the sender withdrew it)
        if (again.st_size, again.st_mtime) != (remote.size, remote.mtime):
            waiting.append(remote.name)
        elif profile.checksum and remote.name + CHECKSUM_SUFFIX not in now:
            waiting.append(remote.name)
        else:
            steady.append((remote, profile))
    return steady, waiting


def fetch(sftp, folder: str, remote: RemoteFile, landing_dir: Path) -> tuple[Path, str]:
    """Download a settled file into the landing folder; returns its local path and its SHA-256. A file whose size
    moved since it was listed is refused for this run (still being written)."""
    local = landing_path(landing_dir, remote.name)
    received = tuned_sftp_get(sftp, posixpath.join(folder, remote.name), local)
    if received != remote.size:
        local.unlink(missing_ok=True)
        raise BadInputError(remote.name, f"changed while being fetched ({remote.size} bytes listed, {received} read): "
                                         f"still being written; it will be taken once it has settled")
    return local, sha256_of(local)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def claimed_checksum(sftp, folder: str, listing: Listing, name: str) -> str | None:
    """The SHA-256 the checksum file beside ``name`` claims (sha256sum format), or None without one."""
    checksum_name = listing.checksums.get(name)
    if checksum_name is None:
        return None
    with sftp.open(posixpath.join(folder, checksum_name), "rb") as handle:
        text = handle.read(4096).decode("ascii", "replace").strip()
    claimed, _, named = text.partition(" ")
    named = named.strip().lstrip("*")
    if len(claimed) != 64 or (named and named != name):
        raise BadInputError(checksum_name, f"is not a sha256sum line for {name!r}: {text[:100]!r}")
    return claimed.lower()


def move_aside(sftp, folder: str, name: str, to: str, sha256: str, listing: Listing) -> str:
    """Move a taken file (and its checksum file) into ``folder/to/``; a name already there (a corrected file
    taken before under the same name) gets its content hash appended, so nothing is overwritten. Idempotent: a
    file already moved is left as it is. Returns the new path."""
    target_dir = posixpath.join(folder, to)
    try:
        sftp.stat(target_dir)
    except FileNotFoundError:
        try:
            sftp.mkdir(target_dir)
        except OSError:
            sftp.stat(target_dir)  # made by a concurrent taker; anything else raises here
    moved = None
    for candidate in (name, f"{name}.{sha256[:12]}"):
        target = posixpath.join(target_dir, candidate)
        try:
            sftp.stat(target)
        except FileNotFoundError:
            moved = target
            break
    if moved is None:
        moved = posixpath.join(target_dir, f"{name}.{sha256}")
    sftp.posix_rename(posixpath.join(folder, name), moved)
    checksum_name = listing.checksums.get(name)
    if checksum_name:
        try:
            sftp.posix_rename(posixpath.join(folder, checksum_name), moved + CHECKSUM_SUFFIX)
        except FileNotFoundError:
            pass  # the checksum file went with an earlier attempt
    return moved
