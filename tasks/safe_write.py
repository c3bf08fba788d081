"""Write a file the user asked for so that it is complete or not there at all.

A report or template written straight to its name leaves a 0-byte or truncated file when the disk
fills or the process dies halfway, and destroys the file that was there before. `atomic_output`
hands the writer a path inside a fresh hidden folder beside the target (the same file system, so
the final rename is atomic); when the writer returns, the file is fsynced and renamed onto the
target, and the folder holding the target fsynced, so after a crash or a power cut the target is
the old file or the new one. On any failure the hidden folder is deleted with whatever the writer
left in it (library scratch files included) and the target is untouched.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

from smartchat.errors import OutputFileError, OutputFileExists


@contextlib.contextmanager
def atomic_output(out: Path, *, what: str, overwrite: bool = True) -> Iterator[Path]:
    """Yield the path to write; on a clean exit it becomes `out`, on any failure nothing changes.

    `what` names the file in messages ("the report"). With `overwrite=False` an existing `out` is
    refused, before any work and again at the rename (it may appear meanwhile). Every OSError,
    the writer's included, becomes an OutputFileError naming `out`.

    Do the writing in a function called inside the block: when it fails, the files a writer
    library left open in its frames are closed here (see `_close_failed_writer`).
    """
    existed = _check_target(out, what=what, overwrite=overwrite)
    try:
        # Named after the target (cut: a folder name has at most 255 bytes) so that a leftover
        # from a killed process says what it was.
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name[:80]}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise _output_error(out, what, exc, existed=existed) from None
    try:
        # The target's own name: writers that go by the extension see the one they expect.
        written = scratch / out.name
        yield written
        _fsync(written)
        _move(written, out, overwrite=overwrite)
        _fsync_folder(out.parent)
    except OSError as exc:
        _close_failed_writer(exc)
        raise _output_error(out, what, exc, existed=existed) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: symlinks, hard links, `..`, a case-insensitive disk."""
    try:
        # Compares device and inode: catches hard links and case-insensitive file systems, which
        # no comparison of path strings can.
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass  # one of them does not exist (yet): fall back to the paths
    return os.path.normcase(a.resolve()) == os.path.normcase(b.resolve())


def _check_target(out: Path, *, what: str, overwrite: bool) -> bool:
    """Refuse what can be refused before any work; whether `out` exists (a dangling link counts)."""
    if out.is_dir():
        raise OutputFileError(
            f"Can't write {what} {out}: it is a folder. Give a file name, e.g. {out / 'x.xlsx'}.",
            out,
        )
    existed = os.path.lexists(out)
    if existed and not overwrite:
        raise _exists_error(out)
    if not out.parent.is_dir():
        raise OutputFileError(
            f"Can't write {what} {out}: the folder {out.parent} does not exist.", out
        )
    return existed


def _exists_error(out: Path) -> OutputFileError:
    return OutputFileExists(f"{out} already exists; nothing was written.", out)


def _output_error(out: Path, what: str, exc: OSError, *, existed: bool) -> OutputFileError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    kept = f" {out.name} is unchanged." if existed else ""
    return OutputFileError(f"Can't write {what} {out}: {reason}. Nothing was written.{kept}", out)


def _fsync(path: Path) -> None:
    # The writer closed the file (zipfile, openpyxl): open it again to flush it to the disk, so
    # the rename below can never publish a name whose data is still only in memory.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(written: Path, out: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(written, out)
        return
    try:
        # A hard link fails if `out` exists, atomically: a file created since the first check
        # is never replaced.
        os.link(written, out)
    except FileExistsError:
        raise _exists_error(out) from None
    except OSError:
        # File systems without hard links (FAT, some network shares): check, then rename.
        if os.path.lexists(out):
            raise _exists_error(out) from None
        os.replace(written, out)


def _fsync_folder(folder: Path) -> None:
    # The rename lives in the folder's entries: flush them too. Best effort: some systems (Windows,
    # some network file systems) can't open or fsync a folder, and the file is in place already.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _close_failed_writer(exc: BaseException) -> None:
    """Close now, quietly, the files a writer that failed with `exc` left open.

    openpyxl, xlsxwriter and others keep their zip archive and scratch files open when a write
    fails. Python closes them when the objects are freed, whenever that is, which retries the
    failed write and prints "Exception ignored in: <function ZipFile.__del__>" and a traceback
    to stderr after our clean message. Clearing the traceback's finished frames frees those
    objects here, where their second failure is expected and not worth reporting.
    """

    def drop_os_errors(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, OSError):
            previous(unraisable)

    previous = sys.unraisablehook
    sys.unraisablehook = drop_os_errors
    try:
        error: BaseException | None = exc
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            if error.__traceback__ is not None:
                traceback.clear_frames(error.__traceback__)
            error = error.__context__
        gc.collect()  # a writer's objects may hold each other in cycles
    finally:
        sys.unraisablehook = previous
