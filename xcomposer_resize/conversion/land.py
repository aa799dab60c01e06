"""Where outputs go and how they land: path checks, temporary sibling folders, atomic rename.

An output is written into a private temporary folder beside its final path
(`.NAME.xcr-tmp-HOST-PID-XXXXXXXX`, mode 0700) and renamed into place only when complete, so a failed,
interrupted or killed run leaves nothing at the output path. Landing is atomic against other
writers: without `--force` the rename never replaces anything but an empty folder, so a run that
finds its target taken at landing time fails and leaves the other run's output alone. With
`--force` the old output is renamed aside, the new one renamed in, then the old one deleted; only
an empty folder, a checkpoint or an earlier xcr output is ever replaced.

A running xcr holds an flock on its temporary folder; later runs into the same parent folder
remove temporaries nobody holds, whose process is gone (SIGKILL, power loss).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..checkpoint.weights import entries_beyond, is_weight_file
from ..errors import OutputError, UsageError, XcrError, arg
from ..families import CONFIG_FILES, is_model_weights
from ..size import Size
from . import record

TMP_TAG = ".xcr-tmp-"
OLD_TAG = ".xcr-old-"
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]  # in temporary names: PIDs mean something only here
TAG_BYTES = 100  # longer output names are shortened (with a hash) in the names of temporaries
INNER_NAME_ALLOWANCE = 64  # room left in a path for the names of the files inside an output

# Called as hook(temporary, output) the instant before a complete output is renamed into place:
# the moment another writer could take the output path. It exists for tests that play that other
# writer (races at landing, see tests/conftest.py's about_to_land); nothing in xcr registers one.
BEFORE_LANDING: list[Callable[[Path, Path], None]] = []


def default_name(source_name: str, old_res: Size, new_res: Size) -> str:
    """`clip-vit-large-patch14-336` → `clip-vit-large-patch14-490`; without the old resolution
    in the name, `-490` is appended (`-448x672` for a size that is not square)."""
    spellings = [f"{old_res.height}x{old_res.width}", str(old_res)]  # a square source may say 224x224
    hits = next(
        (found for text in spellings if (found := list(re.finditer(rf"(?<![0-9x]){text}(?![0-9x])", source_name)))),
        [],
    )
    if hits:
        m = hits[-1]
        return source_name[: m.start()] + str(new_res) + source_name[m.end() :]
    return f"{source_name}-{new_res}"


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it (HF_HUB_CACHE, HF_HOME, ...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def output_paths(out: str | None, default: str) -> tuple[Path, Path]:
    """(shown, final) for an `out` argument: `shown` is the path as the user named it (`~` expanded,
    made absolute), `final` the folder the output lands in (symbolic links followed, so a link to a
    folder, or to where one should be made, receives the output)."""
    given = os.path.expanduser(out if out is not None else default)
    if not os.path.isabs(given):
        try:
            given = os.path.join(os.getcwd(), given)
        except OSError as e:
            raise UsageError(f"the current folder is gone ({e.strerror}); give {arg('out')} as an absolute path") from e
    return Path(os.path.normpath(given)), Path(os.path.realpath(given))


def check_existing(final: Path, shown: Path, force: bool, writes: set[str] | None = None) -> None:
    """Refuse existing content at the output (without --force), or content that is not a
    checkpoint (with it); given `writes`, the files the new output writes, a checkpoint that holds
    anything else."""
    if os.path.lexists(final):
        problem = replace_problem(final, force, writes)
        if problem:
            raise UsageError(problem.format(out=arg("out", shown)))


def check_place(final: Path, shown: Path, source: Path, suggest: str) -> None:
    """Refuse, before any work, places an output cannot be written to or would destroy something:
    names beyond the file system's limits, the current folder, mount points, the source, a hub
    cache, a parent that is not a writable folder."""
    parent = _existing_parent(final)
    _check_length(final, parent)
    src = source.resolve()
    if final == src or src in final.parents:
        raise UsageError(f"{arg('out', shown)} is inside the source folder {source}; choose a folder outside it")
    if final in src.parents:
        raise UsageError(f"{arg('out', shown)} contains the source folder {source}; choose another {arg('out')}")
    try:
        cwd = Path(os.getcwd()).resolve()
    except OSError:
        cwd = None
    if cwd is not None and (final == cwd or final in cwd.parents):
        where = "the current folder" if final == cwd else "a folder that holds the current folder"
        raise UsageError(
            f"{arg('out', shown)} is {where}; xcr lands its output by renaming a finished folder into place, "
            f"which cannot replace it; name a new folder, e.g. {arg('out', './' + suggest)}"
        )
    if _is_mount(final):
        raise UsageError(
            f"{arg('out', shown)} is a mount point, which a finished folder cannot be renamed onto; "
            f"name a new folder inside it, e.g. {arg('out', str(shown / suggest))}"
        )
    cache = hub_cache_dir().resolve()
    if final == cache or cache in final.parents or _in_cached_repo(final):
        raise UsageError(
            f"{arg('out', shown)} is inside a Hugging Face cache, which only huggingface_hub may write; "
            f"choose another {arg('out')}"
        )
    if not parent.is_dir():
        raise UsageError(f"cannot create {shown}: {parent} is not a folder; choose another {arg('out')}")
    if _read_only(parent):
        raise UsageError(f"cannot write to {parent}: it is on a read-only file system; choose another {arg('out')}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {parent}: permission denied; choose another {arg('out')}")


# What a checkpoint folder is made of: weights, configs, tokenizer and card files. A folder that
# holds anything else (a log, a subfolder of checkpoints) is never deleted by --force.
CHECKPOINT_SUFFIXES = (".json", ".txt", ".md", ".model", ".tiktoken", ".py", ".jinja", ".gitattributes")


def replace_problem(final: Path, force: bool, writes: set[str] | None = None) -> str | None:
    """Why an existing `final` may not be replaced, as a message with an `{out}` field; None if
    it may: an empty folder always; with --force an earlier xcr output that holds nothing but what
    it wrote, or a checkpoint that holds nothing but its own weights and what the new output writes
    (`writes`, paths relative to the folder; None: not known yet, so only files a checkpoint is made
    of). A Trainer's optimizer.pt, a PEFT adapter, code and notes beside a checkpoint are never
    replaced."""
    if final.is_symlink() or not (final.is_dir() or final.is_file()):
        return f"{{out}} exists and is neither a folder nor a file; choose another {arg('out')}"
    if final.is_file():
        return f"{{out}} is a file; xcr writes a folder and never replaces a file; choose another {arg('out')}"
    try:
        entries = sorted(final.iterdir())
    except OSError as e:
        return f"{{out}} exists and cannot be listed ({e.strerror}); choose another {arg('out')}"
    if not entries:
        return None
    names = [p.name for p in entries]
    extra = record.foreign(final)  # an earlier xcr output: what in it that output did not write
    if extra is not None:
        if extra:
            return (
                f"{{out}} is an earlier xcr output but also holds {_some(extra)} that it did not write, which "
                f"{arg('force', True)} would delete; move {'it' if len(extra) == 1 else 'them'} out, "
                f"or choose another {arg('out')}"
            )
        return (
            None if force else f"{{out}} already holds an earlier xcr output; pass {arg('force', True)} to replace it"
        )
    if any(n in names for n in CONFIG_FILES) and any(is_weight_file(n) for n in names):
        if writes is None:
            foreign = [p.name + ("/" if p.is_dir() else "") for p in entries if not _checkpoint_file(p)]
            what = ""
        else:
            weights = {n for n in names if is_model_weights(n)}  # the checkpoint's own: replacing it replaces them
            try:
                foreign = entries_beyond(final, writes | weights)
            except OSError as e:
                return f"{{out}} exists and cannot be listed ({e.strerror}); choose another {arg('out')}"
            what = " that the new output does not write"
        if foreign:
            return (
                f"{{out}} is a checkpoint but also holds {_some(foreign)}{what}, which {arg('force', True)} would "
                f"delete; move {'it' if len(foreign) == 1 else 'them'} out, or choose another {arg('out')}"
            )
        return None if force else f"{{out}} already holds a checkpoint; pass {arg('force', True)} to replace it"
    return (
        f"{{out}} holds {_some(names)} and is not a checkpoint; {arg('force', True)} replaces only an empty "
        f"folder, a checkpoint (config.json and weights) or an earlier xcr output; choose another {arg('out')}"
    )


def _checkpoint_file(path: Path) -> bool:
    name = path.name
    return path.is_file() and (is_weight_file(name) or name.endswith(CHECKPOINT_SUFFIXES))


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} ({shown})"


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what is at `path` now, or None when nothing is: what --force was asked
    to replace, to be compared at landing time."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _in_cached_repo(path: Path) -> bool:
    """Inside a `models--owner--name` folder of some Hugging Face cache (its snapshots/, blobs/ or
    refs/, or one that already holds them)."""
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("models--") and (
            parts[i + 1] in ("snapshots", "blobs", "refs") or (Path(*parts[: i + 1]) / "snapshots").is_dir()
        ):
            return True
    return False


def _existing_parent(path: Path) -> Path:
    for p in path.parents:
        if os.path.lexists(p):
            return p
    return Path("/")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _is_mount(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def _check_length(final: Path, parent: Path) -> None:
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
        path_max = os.pathconf(parent, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in final.relative_to(parent).parts:
        n = len(os.fsencode(part))
        if n > name_max:
            raise UsageError(
                f"the output name {part[:40]}… is {n} bytes long, over this file system's limit of {name_max}; "
                f"choose a shorter {arg('out')}"
            )
    n = len(os.fsencode(str(final)))
    if n + INNER_NAME_ALLOWANCE >= path_max:
        raise UsageError(
            f"the output path is {n} bytes long; with the files inside it that is over this system's "
            f"limit of {path_max}; choose a shorter {arg('out')}"
        )


def _tag(name: str) -> str:
    """`name`, or for a long one a shortened form with a hash, so temporary names stay within limits."""
    raw = os.fsencode(name)
    if len(raw) <= TAG_BYTES:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:12]
    return os.fsdecode(raw[: TAG_BYTES - 20]) + "~" + digest


class ChangedError(OutputError):
    """The output was created or changed by another writer while this run wrote its own."""


class Staging:
    """The private temporary folder an output is written into, beside its final place."""

    def __init__(self, out: Path, path: Path, created: list[Path], lock: int | None) -> None:
        self.out = out
        self.path = path
        self.created = created  # parent folders this run made, outermost first
        self.lock = lock
        self.landed = False
        self.interrupts: list[BaseException] = []  # Ctrl-C/SIGTERM held back while the output landed
        self.leftover: tuple[Path, str] | None = None  # a replaced output that could not be deleted, and why

    @classmethod
    def create(cls, out: Path) -> Staging:
        """Make the missing parents of `out`, clean stale temporaries there, and make a temporary.
        Interruptions are held back until the temporary is known, so none can leak it."""
        with deferred_signals() as pending:
            created = _make_parents(out.parent)
            staging = None
            try:
                clean_stale(out)
                prefix = f".{_tag(out.name)}{TMP_TAG}{HOST}-{os.getpid()}-"
                path = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
                staging = cls(out, path, created, _hold(path))
            except BaseException:
                _remove_created(created)
                raise
        assert staging is not None
        if pending:
            staging.discard()
            raise pending[0]
        return staging

    def land(
        self,
        force: bool,
        mode: int,
        seen: tuple[int, int] | None,
        on_landed: Callable[[], None] | None = None,
        fsync: bool = False,
        writes: set[str] | None = None,
    ) -> None:
        """Rename the complete temporary to the output, with `mode` for the folder; atomic against
        other runs. Raises OutputError when the output was created or changed meanwhile (and
        replaces nothing). `seen` is the identity of what was at the output when the run checked it:
        --force replaces that, never something that appeared meanwhile (another run's output), nor a
        checkpoint that has come to hold files beyond `writes` (the files this output writes).
        `fsync`: every file and folder of the temporary is flushed to the disk before the rename,
        and the parent folder after it, so a landed output survives a power loss.

        Ctrl-C and SIGTERM are held back while the output lands and `on_landed` records it: one that
        arrives then is kept in `self.interrupts` instead of being raised, so a landed output is
        never reported as "nothing was written". The caller decides what it means.
        """
        for hook in list(BEFORE_LANDING):
            hook(self.path, self.out)
        current = os.stat(self.path).st_mode
        os.chmod(self.path, mode | (current & stat.S_ISGID))  # a setgid parent's group stays
        if fsync:
            sync_tree(self.path)
        old = None
        with _locked(self.out.parent), deferred_signals() as self.interrupts:
            if not force or not os.path.lexists(self.out):
                try:
                    os.rename(self.path, self.out)  # replaces nothing but an empty folder
                except OSError as e:
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                        raise self._changed(force) from e
                    raise
            else:
                if identity(self.out) != seen or replace_problem(self.out, force=True, writes=writes):
                    raise self._changed(force)
                old = self.out.parent / f".{_tag(self.out.name)}{OLD_TAG}{HOST}-{os.getpid()}"
                os.rename(self.out, old)
                try:
                    os.rename(self.path, self.out)
                except BaseException:
                    os.rename(old, self.out)
                    raise
            self.landed = True
            if on_landed:
                on_landed()
        self._release()
        if fsync:
            with contextlib.suppress(OSError):
                _sync(self.out.parent)
        if old is not None:
            try:
                remove(old)
            except OutputError as e:  # landed: a leftover is reported, never a failure
                self.leftover = (old, e.message)
            except KeyboardInterrupt as e:
                self.interrupts.append(e)

    def _changed(self, force: bool) -> OutputError:
        what = "run again to replace it" if force else f"pass {arg('force', True)} to replace it"
        return ChangedError(
            f"{self.out} was created or changed by someone else while this run was writing; it was left as it "
            f"is and this run's output was discarded; {what}, or choose another {arg('out')}"
        )

    def discard(self) -> None:
        """Remove the temporary and the parents this run made (when empty); never raises."""
        with contextlib.suppress(OSError, OutputError):
            remove(self.path)
        self._release()
        _remove_created(self.created)

    def _release(self) -> None:
        if self.lock is not None:
            with contextlib.suppress(OSError):
                os.close(self.lock)
            self.lock = None


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, the folders after what they hold."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            _sync(Path(root) / name)
        _sync(Path(root))


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parents(folder: Path) -> list[Path]:
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    try:
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                continue
            created.append(p)
    except BaseException:
        _remove_created(created)
        raise
    return created


def _remove_created(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            return  # not empty (someone else wrote there) or gone: leave it and everything above


def _hold(path: Path) -> int | None:
    """Hold an flock on `path` for as long as this process lives (or until released)."""
    return _lock(path)[0]  # without flock, the host and PID in the name still protect this run


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise landings and clean-ups in `folder` between xcr processes (where flock works)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[BaseException]]:
    """Hold SIGINT and SIGTERM back for the block. Each that arrived meanwhile is handed to the
    handler it would have met, after the block, and what that handler raises (KeyboardInterrupt,
    SigTerm) is appended to the yielded list instead of propagating.

    Python runs signal handlers in the main thread, whichever thread the kernel picked, so swapping
    the handlers (not the thread's signal mask) covers threads such as rich's progress refresher.
    Outside the main thread nothing is held back (Python would not raise there anyway).
    """
    caught: list[BaseException] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or any(signal.getsignal(s) is None for s in signums):
        yield caught
        return
    arrived: list[signal.Signals] = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signal.Signals(signum))) for s in signums}
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in arrived:
            handler = previous[signum]
            if callable(handler):
                try:
                    handler(signum, None)
                except BaseException as e:
                    caught.append(e)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)  # its default action, now that nothing is half done


# `.NAME.xcr-tmp-HOST-PID-XXXXXXXX` (and `.NAME.xcr-tmp-PID` from xcr 0.1), `.NAME.xcr-old-HOST-PID`
_TEMPORARY = re.compile(r"^\..+\.xcr-(?P<kind>tmp|old)-(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>\d+)(?:-[a-z0-9_]{8})?$")
OTHER_HOST_AGE = 24 * 3600  # a temporary of another host, on a file system without flock, is stale after this


def clean_stale(out: Path) -> bool:
    """Remove temporaries in `out`'s folder left by runs that no longer exist (killed, power loss),
    and put back the output that a killed --force run of `out` had moved aside. Returns whether
    one was put back."""
    restored = False
    with _locked(out.parent):
        try:
            entries = list(out.parent.iterdir())
        except OSError:
            return False
        olds = []
        for entry in entries:
            m = _TEMPORARY.match(entry.name)
            if not m or not _abandoned(entry, m["host"], m["pid"], m["kind"] == "tmp"):
                continue
            if m["kind"] == "tmp":
                with contextlib.suppress(OutputError):
                    remove(entry)
            elif entry.name.startswith(f".{_tag(out.name)}{OLD_TAG}"):
                olds.append(entry)
        olds.sort(key=lambda p: p.lstat().st_ctime, reverse=True)  # the newest was the output last
        for entry in olds:
            if not restored and not os.path.lexists(out):
                try:
                    os.rename(entry, out)
                    restored = True
                    continue
                except OSError:
                    continue  # cannot put it back: leave it for the user
            with contextlib.suppress(OutputError):
                remove(entry)
    return restored


def _abandoned(path: Path, host: str | None, pid: str, lockable: bool) -> bool:
    """True when no live run owns the temporary at `path`: on this host, its process is gone; on
    another host sharing the folder, nobody holds its flock (or, where flock does not work, it has
    not changed for a day). A temporary held by a live run is never touched."""
    held = _held(path) if lockable else None
    if held:
        return False
    if host is None or host == HOST:
        return not _alive(pid)
    if held is False:
        return _age(path) > 60  # unheld, and not one being created right now
    return _age(path) > OTHER_HOST_AGE


def _held(path: Path) -> bool | None:
    """Whether a live process holds the flock of `path`; None where that cannot be known."""
    fd, locked = _lock(path)
    if fd is None:
        return None
    os.close(fd)
    return None if locked is None else not locked


def _lock(path: Path) -> tuple[int | None, bool | None]:
    """Open the folder `path` and try its flock without waiting: (fd, True) when taken, (fd, False)
    when another process holds it, (fd, None) where flock fails otherwise; (None, None) when it
    cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    except OSError:
        return fd, None
    return fd, True


def _age(path: Path) -> float:
    """Seconds since anything at the top of `path` last changed."""
    try:
        newest = max([path.lstat().st_mtime, *(p.lstat().st_mtime for p in path.iterdir())])
    except OSError:
        return 0.0
    return time.time() - newest


def _alive(pid_text: str) -> bool:
    """Whether process `pid_text` of this host is running (a zombie, killed and not yet reaped, is not)."""
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def remove(path: Path) -> None:
    """Delete a file, link or folder tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot remove {path}: {e.strerror or e}") from e


def umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def set_modes(folder: Path, sources: dict[str, Path]) -> None:
    """Give every output file and subfolder the permissions its source has, as cp does (the umask
    applies), so private or gated weights never become readable by more people by being
    converted. The owner keeps read and write (and search, on folders)."""
    mask = umask()
    for name, src in sources.items():
        path = folder / name
        owner = 0o700 if path.is_dir() else 0o600
        try:
            mode = os.stat(src).st_mode & 0o777
        except OSError:
            mode = owner
        os.chmod(path, (mode & ~mask) | owner)


def folder_mode(source_folder: Path) -> int:
    try:
        mode = os.stat(source_folder).st_mode & 0o777
    except OSError:
        mode = 0o700
    return (mode & ~umask()) | 0o700


def os_error(e: OSError, out: Path) -> XcrError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            f"no space left on the device while writing {out}; free space or choose another {arg('out')}"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {out}: {e.strerror}; choose another {arg('out')}")
    if e.errno == errno.ENAMETOOLONG:
        return UsageError(f"cannot write {out}: a name or the path is too long; choose a shorter {arg('out')}")
    where = f" ({e.filename})" if e.filename else ""
    return OutputError(f"writing {out} failed: {e.strerror or e}{where}")
