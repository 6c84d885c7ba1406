"""Shared test helpers: trees on disk, snapshots, and running splitfile."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "splitfile.py")
sys.path.insert(0, ROOT)

import splitfile  # noqa: E402


def bundle(*files: tuple[str, bytes], prose: bytes = b"") -> bytes:
    """Return a bundle holding FILES as (name, body) pairs."""
    out = [prose]
    for name, body in files:
        raw = name.encode("utf-8", "surrogateescape")
        out.append(b"<<<FILE " + raw + b">>>\n" + body + b"<<<END " + raw + b">>>\n")
    return b"".join(out)


def make_tree(root: str, files: dict[str, bytes]) -> None:
    """Create files under ROOT from {relative path: bytes}."""
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def snapshot(root: str) -> dict[str, tuple]:
    """Return everything under ROOT: kind, bytes or link target, mode, mtime."""
    result: dict[str, tuple] = {}
    if not os.path.lexists(root):
        return result
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    result[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ino)
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                result[rel] = ("other", stat.S_IFMT(st.st_mode))
    return result


def files_of(root: str) -> dict[str, bytes]:
    """Return {relative path: bytes} of the regular files under ROOT."""
    return {rel: entry[1] for rel, entry in snapshot(root).items() if entry[0] == "file"}


def leftovers(root: str) -> list[str]:
    """Return every .splitfile- entry under ROOT."""
    found = []
    for folder, dirs, files in os.walk(root):
        found += [os.path.join(folder, n) for n in dirs + files if n.startswith(".splitfile-")]
    return found


class Result:
    def __init__(self, code: int, out: bytes, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


class _TTYStdin(io.TextIOWrapper):
    def isatty(self) -> bool:
        return True


def run(argv: list[str], stdin: bytes = b"", tty: bool = False) -> Result:
    """Run splitfile.main(ARGV) in this process, feeding STDIN; capture the output."""
    out = io.BytesIO()
    err = io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stdin_cls = _TTYStdin if tty else io.TextIOWrapper
    fake_stdin = stdin_cls(io.BytesIO(stdin), encoding="utf-8")
    old_stdin = sys.stdin
    sys.stdin = fake_stdin
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
            code = splitfile.main(argv)
    finally:
        sys.stdin = old_stdin
    stdout.flush()
    return Result(code, out.getvalue(), err.getvalue())


# The os functions splitfile calls on the filesystem, wrapped by the fault and swap tests.
OS_CALLS = ("open", "read", "write", "close", "mkdir", "rename", "replace", "link", "unlink", "rmdir",
            "fsync", "fchmod", "stat", "lstat", "fstat")
_PATH_MODULES = {"os", "genericpath", "posixpath", "ntpath", "tests.helpers", "tests.test_safety"}


def called_by_splitfile() -> bool:
    """Tell whether the os call being wrapped comes from splitfile itself (perhaps through os.path).

    Call it from the wrapper itself: two frames up is whoever called the os function.
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in _PATH_MODULES:
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__") == "splitfile"


class PatchedOs:
    """A context in which each of OS_CALLS goes through `self._wrap(name, real)`, a subclass's wrapper."""

    def __init__(self) -> None:
        self._patches: list = []

    def _wrap(self, name: str, real):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        from unittest import mock

        for name in OS_CALLS:
            patcher = mock.patch.object(os, name, self._wrap(name, getattr(os, name)))
            patcher.start()
            self._patches.append(patcher)
        return self

    def __exit__(self, *exc: object) -> None:
        for patcher in reversed(self._patches):
            patcher.stop()


def inherited_ignored(signum: int) -> bool:
    """Tell whether this process was started with SIGNUM ignored (a background job: SIGINT), as its children are."""
    import signal

    return signal.getsignal(signum) == signal.SIG_IGN


def read_terminal(leader: int) -> bytes:
    """Return all a pseudo-terminal's other side wrote, once it is closed (reading then fails or ends)."""
    screen = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # Linux: EIO once the other side is closed
            break
        if not data:
            break
        screen += data
    os.close(leader)
    return screen


def run_process(argv: list[str], stdin: bytes = b"", **kw) -> subprocess.CompletedProcess:
    """Run splitfile.py as a real process."""
    return subprocess.run(
        [sys.executable, SCRIPT, *argv], input=stdin, capture_output=True, timeout=120, **kw
    )


class ForceNoDirFd:
    """Mixin: run the test with the lstat-based walk, as where dir_fd is missing (Windows).

    Writer's use_dir_fd default is bound when the class is defined, so it is the default itself that changes.
    """

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        defaults = splitfile.Writer.__init__.__kwdefaults__
        saved = dict(defaults)
        defaults["use_dir_fd"] = False
        self.addCleanup(defaults.update, saved)  # type: ignore[attr-defined]


class TempDirTest(unittest.TestCase):
    """A test with a fresh folder `self.tmp` holding `outer/dest` as the usual output."""

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="splitfile-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.outer = os.path.join(self.tmp, "outer")
        self.dest = os.path.join(self.outer, "dest")
        os.makedirs(self.dest)
        # Bundles are named relative to here, as a user would type them.
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.tmp)

    def write_bundle(self, data: bytes, name: str = "bundle.txt") -> str:
        """Write DATA to NAME in the test folder; return NAME (the cwd is that folder)."""
        with open(os.path.join(self.tmp, name), "wb") as f:
            f.write(data)
        return name

    def assertUnchanged(self, before: dict, root: str | None = None) -> None:
        root = root or self.outer
        self.assertEqual(snapshot(root), before)
        self.assertEqual(leftovers(root), [])

    def assertNoTraceback(self, err: str) -> None:
        self.assertNotIn("Traceback", err)
