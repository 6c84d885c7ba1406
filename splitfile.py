#!/usr/bin/env python3
"""Split a bundle of text into files: exact to the byte, safe, all or nothing.

A bundle holds files between whole-line markers; everything else is ignored:

    Here are the files you asked for.
    <<<FILE src/app.py>>>
    print("hello")
    <<<END src/app.py>>>

- A line ends at LF. Only to recognise a marker, a final LF and then one CR
  are dropped, so CRLF bundles work. A UTF-8 byte-order mark at the start is
  ignored; a UTF-16 or UTF-32 one is refused.
- A block opens at a line `<<<FILE NAME>>>` and closes at the first line that
  is exactly `<<<END NAME>>>` for the same NAME. Every line between is body,
  other marker lines included, so a bundle can carry another bundle.
- The body is the exact bytes of those lines, each with its own terminator:
  never re-encoded, never re-terminated. It is empty or ends with LF.
- Lines outside blocks (chat prose, code fences) are ignored; one that almost
  looks like a marker gets a warning. A stray `<<<END ...>>>` is an error.
- NAME is a relative path with `/` between parts, checked strictly: no `..`,
  no absolute path, no control or invisible character, no `.git`.

Nothing under the output directory changes unless every block is well formed,
every name is valid and every target can be written: bodies stream into
`.splitfile-*` temporary files beside their targets and are renamed into place
only at the end. The full contract is SPEC.md; README.md is the user guide.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time; only the type checker needs it
    from typing import IO, Callable, Final, Iterable, Iterator, NoReturn, Optional, Protocol, Sequence, TypeVar, Union

    T = TypeVar("T")

    Origin = Union[int, "_Located"]  # a line number, or an event that finds its own
    Handle = Union[int, str]  # a folder: a descriptor, or a path without dir_fd

__version__ = "1.1.0"

# The stable API: these names keep their meaning; everything else is private.
__all__ = [
    "extract", "read", "list_names", "diff", "format", "pack", "main",
    "FileResult", "FileDiff", "SplitWarning",
    "SplitError", "BundleError", "InvalidNameError", "ConflictError", "TargetError", "DiskError", "UsageError",
    "ErrorList",
    "__version__",
]

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

OPEN_PREFIX: Final = b"<<<FILE "
CLOSE_PREFIX: Final = b"<<<END "
MARKER_SUFFIX: Final = b">>>"

MAX_NAME_BYTES: Final = 4096
MAX_PART_BYTES: Final = 255
MAX_SHOWN_NAME: Final = 200  # characters of a name a message shows; a longer one is cut in the middle
# An outside line longer than this is never held whole (a marker line holding
# the longest valid name is far shorter); only its head and tail are kept.
MAX_HELD_LINE: Final = 64 * 1024
CHUNK_SIZE: Final = 1 << 18  # bytes read at a time: small enough to stay in the CPU cache

TEMP_PREFIX: Final = ".splitfile-"
VCS_FOLDERS: Final = frozenset({".git", ".hg", ".svn"})
# Code points that render as nothing but are not in category Cf.
INVISIBLE_FILLERS: Final = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
REFUSED_CATEGORIES: Final = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
WINDOWS_FORBIDDEN: Final = ':<>"|?*'
WINDOWS_DEVICES: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$"]
    + [f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"]
)

BOMS: Final = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
UTF8_BOM: Final = b"\xef\xbb\xbf"

# Can every filesystem call below DIR be made relative to an open folder?
# (os.replace is missing from supports_dir_fd, but it is os.rename's renameat.)
HAVE_DIR_FD: Final = (
    {os.open, os.stat, os.mkdir, os.rename, os.link, os.unlink, os.rmdir} <= os.supports_dir_fd
    and hasattr(os, "O_DIRECTORY")
    and hasattr(os, "O_NOFOLLOW")
)
# Can os.link be told not to follow a symlink at its source (linkat without AT_SYMLINK_FOLLOW)?
LINK_NOFOLLOW: Final = os.link in os.supports_follow_symlinks
O_BINARY: Final = getattr(os, "O_BINARY", 0)  # Windows would translate newlines
O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not hang
# errno values meaning "this filesystem has no hard links": fall back to rename.
NO_LINK_ERRNOS: Final = frozenset(
    getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV") if hasattr(errno, name)
)

# Loading ctypes for renameat2 costs more than it saves on a handful of files.
MANY_FILES: Final = 256

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class SplitError(Exception):
    """A failure of a run: what is wrong (`.message`), the bundle line (`.line`) and file name (`.name`) it is about.

    It renders itself as `SOURCE:LINE: message` (see `render`). A run that finds
    several problems raises one ErrorList holding them all; `.errors` lists
    the problems of any SplitError, so a caller can always loop over it.
    """

    exit_status = EXIT_FAILURE
    warnings: Sequence[SplitWarning] = ()  # warnings of the lines after the first problem, to report with it

    def __init__(self, message: str, line: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.name = name

    @classmethod
    def cannot(cls, verb: str, name: str, reason: BaseException | str, line: int | None = None) -> SplitError:
        """Return the error "cannot VERB NAME: REASON" (REASON: an exception or its human text)."""
        why = reason if isinstance(reason, str) else _reason(reason)
        return cls(f"cannot {verb} {quote(name)}: {why}", line, name)

    @property
    def errors(self) -> list[SplitError]:
        """Every problem this error stands for, in line order: just itself, unless it is an ErrorList."""
        return [self]

    def render(self, source: str) -> str:
        """Return `SOURCE:LINE: message`, leaving out what does not apply (SOURCE shown safely)."""
        where = _shown_source(source)
        if where and self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.message}" if where else self.message


class BundleError(SplitError):
    """The bundle's structure is wrong: encoding, markers, no block at all."""


class InvalidNameError(SplitError):
    """A block's name breaks a name rule or collides with another block's."""


class ConflictError(SplitError):
    """A target holds other content and force was not given."""


class TargetError(SplitError):
    """A target or a folder on its path is something that is never replaced."""


class DiskError(SplitError):
    """The operating system refused a read or a write."""


class UsageError(SplitError):
    """The program was called wrongly: a command-line mistake (exit 2), or a wrong argument to a function."""

    exit_status = EXIT_USAGE

    def __init__(self, message: str, show_usage: bool = False) -> None:
        super().__init__(message)
        self.show_usage = show_usage  # the command line prints its usage line first


class ErrorList(SplitError):
    """Several errors found in one run, all to be reported, in line order."""

    def __init__(self, errors: Sequence[SplitError]) -> None:
        # Stable: errors of one line keep their order; those with no line come last.
        ordered = sorted(errors, key=lambda error: (error.line is None, error.line or 0))
        super().__init__(f"{len(ordered)} errors", ordered[0].line if ordered else None)
        self._errors = ordered

    @property
    def errors(self) -> list[SplitError]:
        return list(self._errors)


def _combined(errors: Sequence[SplitError]) -> SplitError:
    """Return the one error to raise for ERRORS: the error itself if there is one, else an ErrorList."""
    return errors[0] if len(errors) == 1 else ErrorList(errors)


def _reason(exc: BaseException) -> str:
    """Return the human part of an error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, SplitError):
        return exc.message
    return str(exc) or type(exc).__name__


def _path_arg(value: object, what: str) -> str:
    """Return VALUE, a path given to a function (str, bytes or os.PathLike), as a str; else a UsageError about WHAT."""
    try:
        return os.fsdecode(value)  # type: ignore[arg-type]
    except TypeError:
        raise UsageError(f"{what} is a str, bytes or os.PathLike, not a {type(value).__name__}") from None


class Interrupted(BaseException):
    """A termination signal arrived; raised in the main thread to roll back."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# What one cleanup step notes and moves past, so that the next step still runs.
CLEANUP_ERRORS: Final = (OSError, SplitError, KeyboardInterrupt)


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def quote(name: str) -> str:
    """Return NAME quoted for a diagnostic, odd characters escaped, a very long name shortened in the middle."""
    if len(name) <= MAX_SHOWN_NAME:
        return "'" + _escape(name) + "'"
    keep = MAX_SHOWN_NAME // 2
    size = len(name.encode("utf-8", "surrogatepass"))
    return f"'{_escape(name[:keep])}...{_escape(name[-keep:])}' ({size} bytes)"


def _escape(text: str) -> str:
    """Return TEXT with quotes, backslashes and characters that would act on a terminal escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "'\\":
            out.append("\\" + ch)
        elif ch.isprintable() and ch not in INVISIBLE_FILLERS:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _shown_source(source: str) -> str:
    """Return SOURCE (a path as given) for a diagnostic: as it is if plain, else quoted like a name.

    Like `ls`, only what needs quoting is quoted: `bundle.txt:3:` stays readable,
    while a path holding a newline or an escape cannot forge a line of output.
    """
    if len(source) <= MAX_SHOWN_NAME and _escape(source) == source:
        return source
    return quote(source)


def check_name(name: str, windows: bool = False) -> list[str]:
    """Return every reason NAME may not be written; an empty list means valid.

    NAME is the marker's text decoded with `surrogateescape`, so bytes that
    are not UTF-8 show up as lone surrogates. WINDOWS adds the rules that keep
    a name portable to Windows (always on there, and with --portable).
    """
    import unicodedata

    if not name:
        return ["the name is empty"]
    if any(0xD800 <= ord(ch) <= 0xDFFF and not 0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        return ["it holds a lone surrogate, which is no character (only a str from a program can)"]
    reasons: list[str] = []
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        reasons.append("it is not valid UTF-8")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        reasons.append(f"it is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("/"):
        reasons.append("it starts with '/' (names are relative to the output folder)")
    if name.endswith("/"):
        reasons.append("it ends with '/' (a name is a file, not a folder)")
    if "\\" in name:
        reasons.append("it holds a backslash (use '/' between parts)")
    for ch in dict.fromkeys(name):  # each distinct character once, in order
        what = REFUSED_CATEGORIES.get(unicodedata.category(ch))
        if what is None and ch in INVISIBLE_FILLERS:
            what = "an invisible filler character"
        if what:
            reasons.append(f"it holds {what} (U+{ord(ch):04X})")
        elif windows and ch in WINDOWS_FORBIDDEN:
            reasons.append(f"it holds {ch!r}, which Windows forbids in names")
    parts = name.split("/")
    inner = parts[1:-1] if len(parts) > 2 else []
    if "" in inner or (len(parts) == 2 and name.startswith("/") and name.endswith("/")):
        reasons.append("it has an empty part ('//')")
    for part in parts:
        if part:
            reasons.extend(_part_problems(part, windows))
    wrapped = _unwrap(name)
    if wrapped is not None:
        form, meant = wrapped
        reasons.append(f"it is {form}, not a path; write {quote(OPEN_PREFIX.decode() + meant + '>>>')}")
    return list(dict.fromkeys(reasons))


# What wraps a name that prompts and models write but no one means as a path.
_WRAPPERS: Final = {'"': ('"', "in quotes"), "'": ("'", "in quotes"), "`": ("`", "in backticks"),
                    "<": (">", "in angle brackets")}


def _unwrap(name: str) -> tuple[str, str] | None:
    """Return how NAME is a quoted or attribute form of a name, and the name meant; None if it is neither.

    `"a.py"`, `path="a.py"` and `a.py lang=py` are refused; a Hive-style
    folder (`year=2024/a.csv`) is a path and stays valid.
    """
    if not name or (name[0] not in _WRAPPERS and "=" not in name):
        return None  # the usual case, decided without a pattern
    import re

    if len(name) >= 2 and name[0] in _WRAPPERS and name[-1] == _WRAPPERS[name[0]][0]:
        return _WRAPPERS[name[0]][1], name[1:-1].strip()
    attribute = re.match(r"[A-Za-z_][A-Za-z0-9_-]*=([\"'])", name)
    if attribute:
        value = name[attribute.end():]
        end = value.find(attribute.group(1))
        return "in attribute form", (value[:end] if end >= 0 else value).strip()
    spaced = re.search(r"\s[A-Za-z_][A-Za-z0-9_-]*=", name)
    if spaced:
        first = name[:spaced.start()].strip()
        key = re.match(r"[A-Za-z_][A-Za-z0-9_-]*=", first)
        return "in attribute form", first[key.end():] if key else first
    return None


def _part_problems(part: str, windows: bool) -> Iterator[str]:
    """Yield why one non-empty part of a name is refused."""
    if part in (".", ".."):
        yield f"it has a {part!r} part"
        return
    if len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
        yield f"a part is longer than {MAX_PART_BYTES} bytes"
    if part[0].isspace() or part[-1].isspace():
        yield f"part {quote(part)} starts or ends with whitespace"
    if part.casefold() in VCS_FOLDERS:
        yield f"part {quote(part)} is a version-control folder"
    if part.startswith(TEMP_PREFIX):
        yield f"part {quote(part)} starts with {TEMP_PREFIX!r}, splitfile's own prefix"
    if windows:
        if part.endswith("."):
            yield f"part {quote(part)} ends with '.', which Windows drops"
        upper = part.upper()
        if upper.startswith("GIT~") and upper[4:].isdigit():
            yield f"part {quote(part)} is a Windows short name for '.git'"
        if part.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_DEVICES:
            yield f"part {quote(part)} is a reserved device name on Windows"


def name_key(name: str) -> tuple[str, ...]:
    """Return NAME's parts under canonical caseless matching (NFD, casefold, NFD)."""
    import unicodedata

    return tuple(
        unicodedata.normalize("NFD", unicodedata.normalize("NFD", part).casefold())
        for part in name.split("/")
    )


class _Places:
    """Where each of a run's blocks opened: one 8-byte number a block, not an object.

    An origin is a line number (0 for none) or an event that knows where its
    line starts (`where`, `lines`: see _Located); the line is counted only
    when a message asks for it, then kept.
    """

    __slots__ = ("_where", "_lines")

    def __init__(self) -> None:
        from array import array

        self._where = array("q")  # the line if known, else -1 - the bundle offset where it starts
        self._lines: _Lines | None = None  # what finds a line from an offset (one per bundle)

    def append(self, origin: Origin) -> None:
        """Record where the next block opened."""
        if isinstance(origin, int):
            self._where.append(origin)
        else:
            self._where.append(origin.where)
            self._lines = origin.lines

    def pop(self) -> None:
        """Forget the last block."""
        self._where.pop()

    def line(self, number: int) -> int:
        """Return the line of block NUMBER (from 0), 0 for none."""
        where = self._where[number]
        if where < 0:
            assert self._lines is not None, "an offset is recorded only with what counts its line"
            where = self._where[number] = self._lines.at(-1 - where)
        return where


_SEARCHED_CLASHES: Final = 16  # clashes NameIndex finds by a search, before it indexes every name


class _Folders:
    """The folders that names need, as a tree in flat arrays: about 40 bytes a folder, not a dict.

    A bundle of names thousands of parts deep needs millions of folders, and
    a Python object per folder would cost hundreds of bytes each. Folder N
    has a parent (-1 for a top folder), a canonical part (bytes in one
    bytearray), the hash of the two and the number of the first name that
    needed it; `find` looks a child up in an open-addressing table of folder
    numbers, each candidate compared part by part, so it is exact.
    """

    __slots__ = ("parent", "needer", "_hashes", "_starts", "_parts", "_table")

    def __init__(self) -> None:
        from array import array

        # Four bytes a number where two billion folders or names is more than memory holds.
        self.parent = array("i")
        self.needer = array("i")
        self._hashes = array("q")  # of (parent, part): kept, so that growing the table hashes nothing again
        self._starts = array("q", [0])  # folder N's part is _parts[_starts[N]:_starts[N + 1]]
        self._parts = bytearray()
        self._table = array("i", [-1]) * 64  # folder numbers, -1 for a free slot; at most half full

    def find(self, parent: int, part: bytes) -> int:
        """Return the folder PART in the folder PARENT, or -1 if no name needed it."""
        table, mask = self._table, len(self._table) - 1
        slot = hash((parent, part)) & mask
        while True:
            folder = table[slot]
            if folder < 0:
                return -1
            if self.parent[folder] == parent and self._parts[self._starts[folder]:self._starts[folder + 1]] == part:
                return folder
            slot = (slot + 1) & mask

    def add(self, parent: int, part: bytes, needer: int) -> int:
        """Record the folder PART in the folder PARENT, first needed by name NEEDER; return its number."""
        folder = len(self.parent)
        self.parent.append(parent)
        self.needer.append(needer)
        self._hashes.append(hash((parent, part)))
        self._parts += part
        self._starts.append(len(self._parts))
        if 2 * (folder + 1) > len(self._table):  # keep it at most half full: double it, place all again
            from array import array

            self._table = array("i", [-1]) * (2 * len(self._table))
            for known in range(folder):
                self._place(known)
        self._place(folder)
        return folder

    def _place(self, folder: int) -> None:
        """Put FOLDER in the first free slot from where its hash points."""
        table, mask = self._table, len(self._table) - 1
        slot = self._hashes[folder] & mask
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = folder


class NameIndex:
    """The names seen so far, to refuse two that would land on the same file.

    Files are one set of canonical names (a name that is canonical already is
    its own key, so it costs a slot); folders are a _Folders tree, each with
    the first name that needed it. Which earlier name a file clashes with is
    looked up only when one does. So memory and time grow with the total
    length of the names, however deep, and stay small for each name.
    """

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders = _Folders()
        self.names: list[str] = []  # every name added, in order
        self.places = _Places()
        self._clashes = 0
        self._numbers: dict[str, int] | None = None  # canonical name -> number, made after a few clashes

    def add(self, name: str, origin: Origin = 0) -> str | None:
        """Record NAME, from ORIGIN (a line, 0 for none); return why it collides with an earlier name, if it does."""
        key = name_key(name)
        canonical = "/".join(key)
        if canonical == name:
            canonical = name  # one string for both
        folders = self._folders
        parts = [part.encode("utf-8", "surrogatepass") for part in key]
        folder = -1  # above the top folders
        new_from = len(key) - 1  # the first folder part that no earlier name has
        for depth in range(len(key) - 1):
            below = folders.find(folder, parts[depth])
            if below < 0:
                new_from = depth
                # Only the first new folder can be an earlier file: no file lies below a file.
                taken = self._number("/".join(key[: depth + 1]))
                if taken is not None:
                    return f"{quote(name)} needs {self._earlier(taken)} as a folder, but it is a file"
                break
            folder = below
        else:
            below = folders.find(folder, parts[-1])
            if below >= 0:
                return f"{quote(name)} is a file, but {self._earlier(folders.needer[below])} needs it as a folder"
        taken = self._number(canonical)
        if taken is not None:
            if self.names[taken] == name:
                first = self.places.line(taken)
                return f"{quote(name)} appears twice" + (f"; the first block is at line {first}" if first else "")
            return (
                f"{quote(name)} and {self._earlier(taken)} differ only in case or Unicode form;"
                " they would overwrite each other on macOS and Windows"
            )
        number = len(self.names)
        self.names.append(name)
        self.places.append(origin)
        self._files.add(canonical)
        if self._numbers is not None:
            self._numbers[canonical] = number
        for part in parts[new_from:-1]:
            folder = folders.add(folder, part, number)
        return None

    def _number(self, canonical: str) -> int | None:
        """Return the number of the earlier name with this CANONICAL form, if any.

        The first few clashes look for it, keeping nothing: one duplicate in
        a million blocks must not cost a dict of a million names. Past that,
        every name is indexed once.
        """
        if canonical not in self._files:
            return None
        if self._numbers is None:
            self._clashes += 1
            if self._clashes <= _SEARCHED_CLASHES:
                return self._search(canonical)
            self._numbers = {}
            for number, name in enumerate(self.names):
                key = "/".join(name_key(name))
                self._numbers[name if key == name else key] = number
        return self._numbers[canonical]

    def _search(self, canonical: str) -> int:
        """Return the number of the earlier name with this CANONICAL form, which there is."""
        try:
            number = self.names.index(canonical)  # the earlier name is canonical too, mostly: a scan in C
            if "/".join(name_key(self.names[number])) == canonical:
                return number
        except ValueError:
            pass
        return next(number for number, name in enumerate(self.names) if "/".join(name_key(name)) == canonical)

    def _earlier(self, number: int) -> str:
        """Return earlier name NUMBER quoted, with its line if it has one."""
        line = self.places.line(number)
        name = quote(self.names[number])
        return f"{name} (line {line})" if line else name


# ---------------------------------------------------------------------------
# Parser: bytes in, events out; no filesystem access
# ---------------------------------------------------------------------------

class _Lines:
    """Where line numbers come from: the one policy behind every event's `line`.

    Counting newlines costs a pass over every byte, so there are two ways.
    `_CountedLines` counts them as the bytes pass (a pipe cannot be read
    again) and looks at body lines for the never-closed hint as they go.
    `_RereadLines` counts nothing while parsing: a line number asked for later
    is found by reading the bundle file again, so a run that succeeds never
    counts.
    """

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = 1  # the line at the parser's position (kept true by _CountedLines only)

    def now(self) -> int:
        """Return the number of the line at the parser's position, or 0 if it is found only when asked for."""
        raise NotImplementedError

    def at(self, offset: int) -> int:
        """Return the number of the line that bundle byte OFFSET is on: the parser's position, or (reread) any."""
        raise NotImplementedError

    def passed(self, block: _Block, buf: Buffer, start: int, end: int, at_line_start: bool) -> None:
        """Take note that BUF[START:END], body of BLOCK, went by (whole lines, or one too long to hold)."""
        raise NotImplementedError

    def again(self, start: int, end: int) -> Iterable[bytes] | None:
        """Return the bundle's bytes from START to END read again; None where they were looked at as they passed."""
        raise NotImplementedError


class _CountedLines(_Lines):
    """Line numbers counted as the bytes pass: for a bundle that cannot be read again."""

    __slots__ = ()

    def now(self) -> int:
        return self.line

    def at(self, offset: int) -> int:
        return self.line  # past bytes are gone: only the parser's position is ever asked for

    def passed(self, block: _Block, buf: Buffer, start: int, end: int, at_line_start: bool) -> None:
        if block.hints is None or block.hints[1] < _MORE_HINTS:
            _look_for_hints(block, buf, start, end, at_line_start, self.line)
        self.line += buf.count(b"\n", start, end)

    def again(self, start: int, end: int) -> Iterable[bytes] | None:
        return None


class _RereadLines(_Lines):
    """Line numbers found when asked for, by reading the bundle file again from the last one found."""

    __slots__ = ("_reread", "_offsets", "_newlines")

    def __init__(self, reread: Reread) -> None:
        super().__init__()
        self._reread = reread
        # Every offset asked for so far, in order, and the newlines before it:
        # a line asked for after a later one is counted on from the nearest
        # offset before it, never from the top (linear, however asked).
        self._offsets = [0]
        self._newlines = [0]

    def now(self) -> int:
        return 0

    def at(self, offset: int) -> int:
        import bisect

        nearest = bisect.bisect_right(self._offsets, offset) - 1
        start, newlines = self._offsets[nearest], self._newlines[nearest]
        for chunk in self._reread(start, offset):
            newlines += chunk.count(b"\n")
        if start != offset:
            self._offsets.insert(nearest + 1, offset)
            self._newlines.insert(nearest + 1, newlines)
        return newlines + 1

    def passed(self, block: _Block, buf: Buffer, start: int, end: int, at_line_start: bool) -> None:
        pass  # the body is read again for the hint only if the block is never closed

    def again(self, start: int, end: int) -> Iterable[bytes] | None:
        return self._reread(start, end)


class _Located:
    """An event that happened on a line; the line number may be found only when asked for."""

    __slots__ = ("where", "lines")

    def __init__(self, offset: int, line: int, lines: _Lines) -> None:
        # One number, which _Places keeps per block for a late message: the
        # line if known, else -1 - the offset where the line starts in the bundle.
        self.where = line or -1 - offset
        self.lines = lines

    @property
    def line(self) -> int:
        """The number of the line, from 1."""
        where = self.where
        if where < 0:
            where = self.where = self.lines.at(-1 - where)
        return where


class Open(_Located):
    """A block starts: NAME (decoded with surrogateescape)."""

    __slots__ = ("name",)

    def __init__(self, name: str, offset: int, line: int, lines: _Lines) -> None:
        super().__init__(offset, line, lines)
        self.name = name


class Body:
    """The next piece of the open block's body, exactly as in the bundle (a view, valid until the next feed)."""

    __slots__ = ("data",)

    def __init__(self, data: memoryview) -> None:
        self.data = data


class Close(_Located):
    """The open block ends."""

    __slots__ = ()


class Fenced(_Located):
    """Just before its Close: the block's first and last body lines are Markdown fences, kept as content."""

    __slots__ = ()


class NearMiss(_Located):
    """A line outside any block looks like a marker but is not one.

    WHY says what differs and the line to write. CLOSED_BY is set when the
    line was meant to open a block and a later line outside any block closes
    it by name: that file would be lost, so it is an error, not a warning.
    """

    __slots__ = ("text", "why", "closed_by")

    def __init__(self, text: bytes, why: str, offset: int, line: int, lines: _Lines) -> None:
        super().__init__(offset, line, lines)
        self.text = text
        self.why = why
        self.closed_by: _Located | None = None


if TYPE_CHECKING:
    Event = Union[Open, Body, Close, NearMiss, Fenced]
    Buffer = Union[bytes, bytearray]
    Reread = Callable[[int, int], Iterable[bytes]]


def _marker_text(line: bytes) -> bytes:
    """Return LINE without its final LF and then one CR: the text a marker is matched on."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _find_marker(buf: Buffer, marker: bytes, start: int, end: int) -> int:
    """Return where MARKER first occurs in BUF[START:END], or -1: bytes.find, faster on most text.

    Markers start with '<', which most text holds rarely, and a one-byte find
    is a memchr: about ten times faster than a general search. Text full of
    '<' (HTML) falls back to the general search after 64 false starts.
    """
    for _ in range(64):
        found = buf.find(b"<", start, end)
        if found < 0 or buf.startswith(marker, found, end):
            return found
        start = found + 1
    return buf.find(marker, start, end)


def _is_open_marker(text: bytes) -> bool:
    """Tell whether TEXT is an open marker (SPEC 1.3)."""
    return text.startswith(OPEN_PREFIX) and text.endswith(MARKER_SUFFIX)


def _is_close_shaped(text: bytes) -> bool:
    """Tell whether TEXT is shaped like a close marker, for any name (SPEC 1.4)."""
    return text.startswith(CLOSE_PREFIX) and text.endswith(MARKER_SUFFIX)


# What chat answers wrap markers in: Markdown quotes, lists (also numbered),
# headings, table cells, bold, code spans.
_DECORATION = b" \t\r\n\v\f>*_`~-+#|0123456789."
_BLANKS = b" \t\v\f\r"
_TRAILING_DECORATION = b" \t\v\f*_`~#|"  # not '>': a marker ends with '>>>'
_MORE_HINTS = 100  # how many more likely closes of a never-closed block are counted
_FENCE_LOOK = 64  # a fence line (```python) is short: this much of a body's head and tail tells


def _without_invisible(text: bytes) -> bytes:
    """Return TEXT without the invisible characters around it that are not ASCII (NBSP, zero-width, BOM)."""
    if text.isascii():
        return text
    import unicodedata

    decoded = text.decode("utf-8", "surrogateescape")
    start, end = 0, len(decoded)
    while start < end and _invisible(decoded[start], unicodedata.category):
        start += 1
    while end > start and _invisible(decoded[end - 1], unicodedata.category):
        end -= 1
    return decoded[start:end].encode("utf-8", "surrogateescape")


def _invisible(ch: str, category: Callable[[str], str]) -> bool:
    """Tell whether CH is a character beyond ASCII that shows as nothing: a blank, or a format character."""
    return ord(ch) > 0x7F and (ch.isspace() or category(ch) == "Cf" or ch in INVISIBLE_FILLERS)


def _is_near_miss(text: bytes) -> bool:
    """Tell whether TEXT, not an exact marker, looks like a mistyped one."""
    core = _without_invisible(text.strip().lstrip(_DECORATION)).lstrip(_DECORATION)
    if not core.startswith(b"<<"):
        return False
    rest = core.lstrip(b"<").lstrip().upper()
    return rest.startswith(b"FILE") or rest.startswith(b"END")


def _show(text: bytes) -> str:
    """Return marker-like TEXT quoted for a message (its first 200 bytes)."""
    return quote(text[:200].decode("utf-8", "replace"))


def _blanks(what: bytes, where: str) -> str:
    """Describe the blanks WHAT, "leading" or "trailing" (WHERE) on a marker line; they are invisible, so say so."""
    if b"\r" in what:
        side = "end" if where == "trailing" else "start"
        return f"it has an extra carriage return (CR) at its {side}, which is invisible"
    return f"it has {_count_blanks(what, where)}, which {'is' if len(what) == 1 else 'are'} invisible"


def _count_blanks(what: bytes, where: str) -> str:
    """Return e.g. "a trailing blank", "4 leading blanks" or "2 leading tabs" for WHAT."""
    count = len(what)
    kind = "tab" if what == b"\t" * count else "blank"
    return f"a {where} {kind}" if count == 1 else f"{count} {where} {kind}s"


def _repair(text: bytes) -> tuple[str, bytes, list[str]] | None:
    """Read TEXT as a mistyped marker: return its keyword (FILE or END), its name, and every way it differs.

    None if TEXT does not read as a marker at all.
    """
    problems: list[str] = []
    visible = _without_invisible(text)
    if visible != text:
        problems.append("it has an invisible character (a non-breaking or zero-width space, or a byte-order mark)"
                        " before or after it")
        text = visible
    core = text.rstrip(_BLANKS)
    if core != text:
        problems.append(_blanks(text[len(core):], "trailing"))
    body = core.lstrip(_BLANKS)
    indent = core[:len(core) - len(body)]
    if len(indent) > 1 or indent == b"\t":
        problems.append(f"it is indented ({_count_blanks(indent, 'leading')})")
    elif indent:
        problems.append(_blanks(indent, "leading"))
    inner = body.lstrip(_DECORATION)
    left = body[:len(body) - len(inner)].strip()
    plain = inner.rstrip(_TRAILING_DECORATION)
    right = inner[len(plain):].strip()
    if left or right:
        around = " and ".join([f"{_show(left)} before it"] * bool(left) + [f"{_show(right)} after it"] * bool(right))
        problems.append(f"it carries Markdown decoration ({around}); a marker is plain text")
    opening = len(plain) - len(plain.lstrip(b"<"))
    if opening < 2:
        return None
    if opening != 3:
        problems.append(f"it starts with {opening} '<' where a marker has 3")
    rest = plain[opening:]
    if rest[:1].isspace():
        problems.append("it has a blank after '<<<'")
        rest = rest.lstrip(_BLANKS)
    word = "FILE" if rest[:4].upper() == b"FILE" else "END" if rest[:3].upper() == b"END" else ""
    if not word:
        return None
    if rest[:len(word)] != word.encode():
        problems.append(f"it has {_show(rest[:len(word)])} where a marker has {word!r}: case matters")
    rest = rest[len(word):]
    if rest.startswith(b":"):
        problems.append(f"it has a colon after {word}")
        rest = rest[1:]
        rest = rest[1:] if rest.startswith(b" ") else rest
    elif rest.startswith(b" "):
        rest = rest[1:]
    elif rest and not rest.startswith((b">", b"_")):
        problems.append(f"it has no space after {word}")
    closing = len(rest) - len(rest.rstrip(b">"))
    if closing != 3:
        problems.append(f"it ends with {closing} '>' where a marker has 3")
    name = rest[:len(rest) - closing]
    if _without_invisible(name) != name:
        problems.append(f"it has an invisible character around the name, after {word}")
        name = _without_invisible(name)
    if name != name.lstrip(_BLANKS):
        problems.append(f"it has more than one blank after {word}")
        name = name.lstrip(_BLANKS)
    if name != name.rstrip(_BLANKS):
        problems.append("it has a blank before '>>>'")
        name = name.rstrip(_BLANKS)
    return word, name, problems


def _spelling(name: bytes) -> bytes:
    """Return NAME as models vary it least: no quotes, no leading './', lower case."""
    name = name.strip(b"\"'`")
    return (name[2:] if name.startswith(b"./") else name).lower()


def _is_unnamed(name: bytes) -> bool:
    """Tell whether NAME, read from a close-like line, names no file.

    As in `<<<END>>>`, `<<<END FILE>>>`, `<<<END_FILE>>>`, `<<<ENDFILE>>>` and `<<<END FILE: a>>>`.
    """
    word = name.lstrip(b"_ ").upper()
    return not word or word == b"FILE" or word.startswith((b"FILE:", b"FILE "))


def _meant(name: str) -> str:
    """Return the name NAME means: itself, or what its quoted or attribute form wraps."""
    wrapped = _unwrap(name)
    return wrapped[1] if wrapped else name


def _fix(keyword: bytes, name: bytes) -> str:
    """Return "write '<<<KEYWORD NAME>>>'", built from the name meant, never from a quoted form."""
    meant = _meant(name.decode("utf-8", "surrogateescape"))
    return f"write {quote('<<<' + keyword.decode() + ' ' + meant + '>>>')}"


def _near_miss_why(text: bytes) -> tuple[bytes, bytes, str]:
    """Return the keyword and name TEXT, a near miss, was meant to have, and what differs with the line to write."""
    repaired = _repair(text)
    if repaired is None:
        return b"", b"", "markers must be exact and alone on their line"
    word, name, problems = repaired
    keyword = word.encode()
    if keyword == b"END" and _is_unnamed(name):
        return keyword, b"", "; ".join(problems + ["it does not name the file"]) + (
            "; write '<<<END NAME>>>' with the name of the file it closes")
    return keyword, name, "; ".join(problems + [_fix(keyword, name)])


def _close_hint(block: _Block, text: bytes, number: int) -> str:
    """Return why body line NUMBER, TEXT, was probably meant to close BLOCK or to end it; "" if it was not."""
    close = block.close
    if not text.isascii() and _without_invisible(text).strip(_BLANKS).lower() == close.lower():
        return (f"line {number} {_show(text)} was probably meant to close it, but it has an invisible character"
                f" (a non-breaking or zero-width space) around it; {_fix(b'END', block.raw_name)}")
    if _is_open_marker(text):
        fix = _fix(b"END", block.raw_name)
        return f"line {number} starts another block: is the END line above it missing? {fix} before it"
    if text.endswith(close) and text.strip(_BLANKS) != close:
        return f"line {number} ends with the close marker; a marker must be alone on its line"
    if _is_close_shaped(text) and not _is_unnamed(text[len(CLOSE_PREFIX):-len(MARKER_SUFFIX)]):
        return _other_close_hint(block, text, number)  # the usual case in a body that carries a bundle: quick
    repaired = _repair(text)
    if repaired is None or repaired[0] != "END":
        return ""
    name, problems = repaired[1], repaired[2]
    fix = _fix(b"END", block.raw_name)
    if name.lower() == block.raw_name.lower():
        if name != block.raw_name:
            problems.append("the name differs in case")
        return f"line {number} {_show(text)} was probably meant to close it, but {'; '.join(problems)}; {fix}"
    if _is_unnamed(name):
        return f"line {number} {_show(text)} does not name the file; {fix}"
    return _other_close_hint(block, text, number) if _is_close_shaped(text) else ""


def _other_close_hint(block: _Block, text: bytes, number: int) -> str:
    """Return why TEXT, an exact close marker for another name, was probably meant to close BLOCK; "" if not."""
    name = text[len(CLOSE_PREFIX):-len(MARKER_SUFFIX)]
    raw = block.raw_name
    if name.lower() == raw.lower():
        fix = _fix(b"END", raw)
        return f"line {number} {_show(text)} was probably meant to close it, but the name differs in case; {fix}"
    other = name.strip(b"\"'`")
    other = other[2:] if other.startswith(b"./") else other
    if other == raw or other.rsplit(b"/", 1)[-1] == raw.rsplit(b"/", 1)[-1]:
        return f"line {number} {_show(text)} names {_show(name)}, not {_show(raw)}; {_fix(b'END', raw)}"
    if raw[:1] in b"\"'`<" or b"=" in raw:  # a quoted FILE name, perhaps closed by the name meant
        meant = _meant(raw.decode("utf-8", "surrogateescape"))
        if other == meant.encode("utf-8", "surrogateescape") and meant.encode("utf-8", "surrogateescape") != raw:
            return (f"line {number} {_show(text)} closes the name meant; write {quote('<<<FILE ' + meant + '>>>')}"
                    f" at line {block.open.line}")
    return ""


def _look_for_hints(block: _Block, buf: Buffer, start: int, end: int, at_line_start: bool, line: int) -> None:
    """Note each line in BUF[START:END] (LINE the first's number) that probably was meant to close BLOCK.

    Past the first, such lines are only counted, up to _MORE_HINTS: a body
    that carries a bundle holds many, and a run that succeeds must stay fast.
    """
    if block.hints is not None and block.hints[1] >= _MORE_HINTS:
        return
    counted, number = start, line
    found = _find_marker(buf, b"<<<", start, end)
    while found >= 0:
        line_start = buf.rfind(b"\n", start, found) + 1 or start
        line_end = buf.find(b"\n", found, end) + 1 or end
        if line_start > start or at_line_start:
            number += buf.count(b"\n", counted, line_start)  # counted on from the last line: linear
            counted = line_start
            hint = _close_hint(block, _marker_text(bytes(buf[line_start:line_end])), number)
            if hint and block.hints:
                block.hints = (block.hints[0], block.hints[1] + 1)
                if block.hints[1] >= _MORE_HINTS:
                    return
            elif hint:
                block.hints = (hint, 0)
        found = _find_marker(buf, b"<<<", line_end, end)


def _starts_fence(buf: Buffer, start: int, end: int) -> bool:
    """Tell whether the body line at BUF[START:] (whole lines up to END) opens a Markdown code fence."""
    first = bytes(buf[start:min(end, start + _FENCE_LOOK)]).split(b"\n", 1)[0]
    return first.lstrip(b" ").startswith((b"```", b"~~~"))


def _ends_fence(tail: bytes) -> bool:
    """Tell whether TAIL, the end of a body, ends with a fence-closing line after at least one other line."""
    last_start = tail.rfind(b"\n", 0, len(tail) - 1)
    if last_start < 0:  # one line, or a last line too long to be a fence
        return False
    last = _marker_text(tail[last_start + 1:]).strip(b" \t")
    return last.startswith((b"```", b"~~~")) and not last.strip(b"`~")


def _other_format(text: bytes, previous: bytes) -> str:
    """Return the name of another bundle format whose marker line TEXT is (PREVIOUS: the line before); "" if none."""
    if text.lstrip().startswith(b"<file path="):
        return "repomix XML ('<file path=\"...\">')"
    if text.startswith(b"File: ") and previous.startswith(b"=" * 8):
        return "repomix plain text ('File: name' between '=' lines)"
    if text.startswith(b"-- ") and text.endswith(b" --") and len(text) > 6:
        return "txtar ('-- name --')"
    if text.startswith(b"=== ") and text.endswith(b" ===") and len(text) > 8:
        return "'=== FILE: name ===' sections"
    if text.rstrip() == b"---" and previous.strip() and b" " not in previous.strip() and b"." in previous:
        return "files-to-prompt ('name', then '---')"
    return ""


class _Block:
    """The block being read: its name, where it opened, its close marker, what it looks like so far."""

    __slots__ = ("raw_name", "open", "close", "body_offset", "hints", "fence", "tail")

    def __init__(self, raw_name: bytes, open_event: Open, body_offset: int) -> None:
        self.raw_name = raw_name
        self.open = open_event
        self.close = CLOSE_PREFIX + raw_name + MARKER_SUFFIX
        self.body_offset = body_offset
        self.hints: tuple[str, int] | None = None  # why the first line inside was probably meant to close it, and
        # how many more such lines follow
        self.fence = 0  # does the body start with a Markdown fence line: 1 yes, -1 no, 0 no body yet
        self.tail = b""  # the end of the body so far, kept only when it does (a shared empty bytes until then)

    def never_closed(self) -> str:
        """Return the message for this block still open at the end of input."""
        name = self.raw_name.decode("utf-8", "surrogateescape")
        if _unwrap(name):  # no close marker may be built from a quoted name
            message = f"block {quote(name)} is never closed"
        else:
            message = f"block {quote(name)} is never closed: no {_show(self.close)} line follows"
        if self.hints:
            first, more = self.hints
            message += f"; {first}"
            if more >= _MORE_HINTS:
                message += f"; the block holds at least {more} more lines that may be meant to end it"
            elif more:
                message += f"; the block holds {more} more line{'s' if more > 1 else ''} that may be meant to end it"
        return message


class Parser:
    """Turn bundle bytes, fed in chunks of any size, into events.

    `feed(data)` and then `finish()` return lists of Open, Body, Close,
    Fenced and NearMiss events; a structure error raises BundleError. When
    a block is never closed, its lines that were probably meant to close it
    (SPEC 1.10) are named in the error. The events found
    before the error are returned first, and the error raised by the next
    call (`close()` after `finish()`), so that no warning or name before it is
    lost. Body data are views into the chunks fed, never copies. Memory stays
    bounded whatever the length of a body or of a line: a body leaves as soon
    as it cannot be the start of the close marker, and only an unfinished last
    line is carried over.

    Line numbers come from a _Lines policy: with REREAD, a function that
    yields the bundle's bytes from one offset to another (a bundle in a file
    can be read again), nothing is counted until a line number is asked for;
    without it, lines are counted as the bytes pass.
    """

    def __init__(self, reread: Reread | None = None) -> None:
        self._lines: _Lines = _RereadLines(reread) if reread is not None else _CountedLines()
        self._passed = self._lines.passed  # bound once: it is called for every piece of body
        self._buf: Buffer = b""  # the chunk being read
        self._view = memoryview(self._buf)
        self._pos = 0  # how much of _buf is consumed
        self._base = 0  # the bundle offset of _buf[0]
        self._at_line_start = True  # does _pos start a line?
        self._checked_bom = False
        self._block: _Block | None = None
        self._long: list[bytes] | None = None  # head and tail of an outside line too long to hold
        self._blocks_seen = 0
        self._held: list[NearMiss] = []  # near misses kept back while one may turn out to lose a file
        self._opening: dict[bytes, NearMiss] = {}  # the held near-miss FILE lines, by the name meant
        self._pending: BundleError | None = None  # the error to raise at the next call
        self._previous = b""  # the last outside line, while no block is seen
        self._looks_like: tuple[str, _Located] | None = None  # another format's marker, while no block is seen
        self._indented: tuple[NearMiss, bytes] | None = None  # an indented FILE near miss, and its indentation

    def feed(self, data: Buffer) -> list[Event]:
        """Consume DATA; return the events it completes."""
        self.close()
        events: list[Event] = []
        try:
            self._feed(data, events)
        except BundleError as exc:
            self._fail(exc, events)
        return events

    def finish(self) -> list[Event]:
        """Consume the end of input; return the last events, then (or at `close()`) raise BundleError."""
        self.close()
        events: list[Event] = []
        try:
            self._finish(events)
        except BundleError as exc:
            self._fail(exc, events)
        return events

    def close(self) -> None:
        """Raise the structure error found after the events last returned, if there is one."""
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending

    def _fail(self, exc: BundleError, events: list[Event]) -> None:
        """Return the events before EXC first, then raise it: at once if there are none."""
        self._release(events)
        if not events:
            raise exc
        self._pending = exc

    def _release(self, events: list[Event]) -> None:
        """Pass the near misses held back on, in line order."""
        if self._held:
            events.extend(self._held)
            self._held = []
            self._opening.clear()
            self._indented = None

    def _feed(self, data: Buffer, events: list[Event]) -> None:
        """Read DATA after what is left of the last chunk, adding the events found to EVENTS."""
        rest = self._buf[self._pos:]
        rest_offset = self._base + self._pos
        data_offset = self._base + len(self._buf)  # where DATA starts in the bundle
        if not self._checked_bom:
            self._take(rest + data, 0, rest_offset)
            if len(self._buf) >= 4:
                self._check_bom()
                self._run(False, events)
            return
        start = 0
        if rest:
            # Finish the unfinished line with the head of DATA: a small copy,
            # where joining whole chunks would copy every byte once more.
            end = data.find(b"\n") + 1
            if not end or end > MAX_HELD_LINE:
                self._take(rest + data, 0, rest_offset)
                self._run(False, events)
                return
            self._take(rest + data[:end], 0, rest_offset)
            self._run(False, events)
            assert self._pos == len(self._buf), "a whole line was added, so all of it is read"
            start = end
        self._take(data, start, data_offset)
        self._run(False, events)

    def _finish(self, events: list[Event]) -> None:
        """Read what is left at the end of input; raise the error a bundle that ends here has, if any."""
        if not self._checked_bom:
            self._check_bom()
        self._run(True, events)
        self._release(events)
        block = self._block
        if block is not None:
            again = self._lines.again(block.body_offset, self._base + len(self._buf))
            if again is not None:
                self._look_for_hints_in(block, again, block.body_offset)
            raise BundleError(block.never_closed(), block.open.line)
        if not self._blocks_seen:
            message = "no '<<<FILE name>>>' block found; nothing to write"
            if self._looks_like:
                form, where = self._looks_like
                message += (
                    f". Line {where.line} looks like {form}, another bundle format:"
                    " convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"
                )
            raise BundleError(message)

    def _take(self, data: Buffer, start: int, base: int) -> None:
        """Make DATA[START:] the bytes to read next; DATA[0] is at bundle offset BASE."""
        self._buf = data
        self._view = memoryview(data)
        self._pos = start
        self._base = base

    def _offset(self) -> int:
        """Return the bundle offset of the parser's position."""
        return self._base + self._pos

    def _error(self, message: str) -> BundleError:
        """Return a structure error at the line the parser is on."""
        return BundleError(message, self._lines.at(self._offset()))

    def _check_bom(self) -> None:
        """Skip a UTF-8 byte-order mark; refuse a UTF-16 or UTF-32 one (SPEC 1.2)."""
        self._checked_bom = True
        if self._buf.startswith(UTF8_BOM):
            self._pos = len(UTF8_BOM)
            return
        for mark, encoding in BOMS:
            if self._buf.startswith(mark):
                raise BundleError(
                    f"the bundle is {encoding} text; convert it to UTF-8 first, e.g."
                    f" 'iconv -f {encoding} -t UTF-8 IN > OUT', or in PowerShell write it with"
                    " '| Out-File -Encoding utf8' instead of '>'",
                    1,
                )

    def _run(self, final: bool, events: list[Event]) -> None:
        """Read the chunk, inside and outside blocks in turn, until it runs dry."""
        while self._inside(final, events) if self._block else self._outside(final, events):
            pass

    # -- outside any block ---------------------------------------------------

    def _outside(self, final: bool, events: list[Event]) -> bool:
        """Read lines until a block opens (return True) or the chunk runs dry."""
        buf = self._buf
        size = len(buf)
        lines = self._lines
        if self._long is not None:
            self._continue_long_line(final, events)
            if self._long is not None:  # still no end of line
                return False
        while self._block is None:
            pos = self._pos
            end = buf.find(b"\n", pos) + 1
            if not end and not final:
                if size - pos > MAX_HELD_LINE:
                    self._long = [bytes(buf[pos:pos + MAX_HELD_LINE]), bytes(buf[-4:])]
                    self._pos = size
                return False
            end = end or size
            if pos == end:
                return False
            if end - pos > MAX_HELD_LINE:  # too long to hold: keep its head and tail
                self._outside_line(bytes(buf[pos:pos + MAX_HELD_LINE]) + bytes(buf[end - 5:end]), events, False)
            else:
                self._outside_line(bytes(buf[pos:end]), events)
            self._pos = end
            lines.line += 1
        return True

    def _continue_long_line(self, final: bool, events: list[Event]) -> None:
        """Feed the chunk to the long line being skipped, up to its end."""
        assert self._long is not None
        buf = self._buf
        end = buf.find(b"\n", self._pos) + 1
        if not end and not final:
            self._long[1] = (self._long[1] + bytes(buf[-4:]))[-4:]
            self._pos = len(buf)
            return
        end = end or len(buf)
        head, tail = self._long
        self._long = None
        self._outside_line(head + (tail + bytes(buf[max(self._pos, end - 5):end]))[-5:], events, held=False)
        self._pos = end
        self._lines.line += 1

    def _outside_line(self, line: bytes, events: list[Event], held: bool = True) -> None:
        """Handle one line outside any block (HELD: the whole line is in LINE)."""
        text = _marker_text(line)
        lines = self._lines
        if _is_open_marker(text):
            if not held:
                raise self._error(
                    f"this <<<FILE line is longer than {MAX_HELD_LINE} bytes; a name may hold at most"
                    f" {MAX_NAME_BYTES}"
                )
            if self._held:
                self._release(events)
            raw = text[len(OPEN_PREFIX):-len(MARKER_SUFFIX)]
            event = Open(raw.decode("utf-8", "surrogateescape"), self._offset(), lines.now(), lines)
            self._block = _Block(raw, event, self._offset() + len(line))
            self._blocks_seen += 1
            self._at_line_start = True
            events.append(event)
            return
        if _is_close_shaped(text):
            opener = self._opening.get(self._spelled(text[len(CLOSE_PREFIX):-len(MARKER_SUFFIX)]))
            if opener is not None:
                opener.closed_by = _Located(self._offset(), lines.now(), lines)
                raise self._error(f"{_show(text)} closes no open block: line {opener.line} was meant to open it")
            raise self._error(f"{_show(text)} closes no open block; is the <<<FILE line above it mistyped?")
        if self._indented is not None:
            self._note_indented_body(text)
        if not self._blocks_seen and self._looks_like is None:
            form = _other_format(text, self._previous)
            if form:
                self._looks_like = (form, _Located(self._offset(), lines.now(), lines))
            self._previous = text[:200]
        if _is_near_miss(text):
            keyword, name, why = _near_miss_why(text)
            miss = NearMiss(text[:200], why, self._offset(), lines.now(), lines)
            opener = None
            if keyword == b"END" and self._opening:  # closes the FILE line it names (in any spelling), or the last
                opener = self._opening.pop(self._spelled(name) if name else next(reversed(self._opening)), None)
            if opener is not None:  # the error at the FILE line names this line: no warning of its own
                opener.closed_by = miss
                return
            if keyword == b"FILE":
                self._opening[name] = miss
                indent = text[:len(text) - len(text.lstrip(_BLANKS))]
                self._indented = (miss, indent) if len(indent) > 1 or indent == b"\t" else None
            if self._opening or self._held:
                self._held.append(miss)
                if len(self._held) > 1024:  # bounded: past this many, warn without waiting
                    self._release(events)
            else:
                events.append(miss)

    def _spelled(self, name: bytes) -> bytes:
        """Return the name of the FILE near miss that NAME, from an END line, closes: itself or another spelling.

        Another spelling is what a model writes for the same file: other
        case, quotes or a leading './', or only the last part of the path.
        """
        if name in self._opening:
            return name
        wanted = _spelling(name)
        for opened in reversed(self._opening):
            found = _spelling(opened)
            if found == wanted or found.rsplit(b"/", 1)[-1] == wanted.rsplit(b"/", 1)[-1]:
                return opened
        return name

    def _note_indented_body(self, text: bytes) -> None:
        """Say so in the indented FILE near miss just before TEXT if TEXT, its first body line, is indented too."""
        assert self._indented is not None
        miss, indent = self._indented
        self._indented = None
        if text.startswith(indent) and text.strip():
            problem = f"it is indented ({_count_blanks(indent, 'leading')})"
            miss.why = miss.why.replace(
                problem, problem + " and so is the next line: remove the indentation from every line of the block", 1)

    # -- inside a block --------------------------------------------------------

    def _inside(self, final: bool, events: list[Event]) -> bool:
        """Pass body bytes on until the close marker (return True) or the chunk runs dry."""
        block = self._block
        assert block is not None
        buf = self._buf
        size = len(buf)
        # Only whole lines can be judged; at the end of input every byte is one.
        end = size if final else buf.rfind(b"\n", self._pos) + 1
        found = self._find_close(block.close, buf, end, final) if end > self._pos else None
        if found is not None:
            start, after = found
            self._emit(block, start, events)
            lines = self._lines
            if block.fence > 0 and _ends_fence(block.tail):
                events.append(Fenced(self._offset(), lines.now(), lines))
            events.append(Close(self._offset(), lines.now(), lines))
            self._block = None
            self._pos = after
            lines.line += 1
            self._at_line_start = True
            return True
        if end > self._pos:
            self._emit(block, end, events)
        if size - self._pos > max(MAX_HELD_LINE, len(block.close) + 2):
            # A partial line this long cannot be the close marker: pass it on.
            self._emit(block, size, events)
        return False

    def _find_close(self, close: bytes, buf: Buffer, end: int, final: bool) -> tuple[int, int] | None:
        """Return where the first close-marker line in BUF[_pos:END] starts and ends."""
        search = self._pos
        while True:
            start = _find_marker(buf, close, search, end)
            if start < 0:
                return None
            search = start + 1
            if (start == self._pos and not self._at_line_start) or (start > self._pos and buf[start - 1] != 0x0A):
                continue
            after = start + len(close)
            if after == end:  # only at the end of input
                return start, after
            if buf[after] == 0x0A:
                return start, after + 1
            if buf[after] == 0x0D:
                if after + 1 == end:
                    return start, after + 1
                if buf[after + 1] == 0x0A:
                    return start, after + 2

    def _emit(self, block: _Block, end: int, events: list[Event]) -> None:
        """Pass _buf[_pos:END] on as body; keep its head and tail, and tell the line policy."""
        start = self._pos
        if start == end:
            return
        buf = self._buf
        if not block.fence:  # the first body bytes: one byte tells most bodies apart from a fence
            block.fence = 1 if buf[start] in b"`~ " and _starts_fence(buf, start, end) else -1
        if block.fence > 0:
            block.tail = (block.tail + bytes(buf[max(start, end - _FENCE_LOOK):end]))[-_FENCE_LOOK:]
        self._passed(block, buf, start, end, self._at_line_start)
        events.append(Body(self._view[start:end]))
        self._pos = end
        self._at_line_start = buf[end - 1] == 0x0A

    def _look_for_hints_in(self, block: _Block, chunks: Iterable[bytes], offset: int) -> None:
        """Look for the never-closed hints in a body read again, whole lines at a time."""
        line = self._lines.at(offset)
        carry = b""
        at_line_start = True  # false after a line too long to carry was dropped
        for chunk in chunks:
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            _look_for_hints(block, data, 0, cut, at_line_start, line)
            line += data.count(b"\n", 0, cut)
            kept = len(data) - cut <= MAX_HELD_LINE
            at_line_start = kept and (cut > 0 or at_line_start)
            carry = data[cut:] if kept else b""
        _look_for_hints(block, carry, 0, len(carry), at_line_start, line)


def parse(chunks: Iterable[Buffer], reread: Reread | None = None) -> Iterator[Event]:
    """Yield the events of a bundle given as an iterable of byte chunks (see Parser)."""
    parser = Parser(reread)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()
    parser.close()


# ---------------------------------------------------------------------------
# Writer: stage every body beside its target, then rename all into place
# ---------------------------------------------------------------------------


class SignalGuard:
    """Turn SIGINT, SIGTERM and SIGHUP into one Interrupted, except where held.

    `hold()` and `release()` nest: while any hold is open (a step being made
    and recorded, the commit, the rollback) a signal is only noted in
    `pending`. At most one Interrupted is ever raised, and none once the
    outcome is settled (`settle()`: failing, or `succeed()`: every file in
    place), so neither rollback nor the report of the outcome can be cut
    short. A signal the parent set to be ignored (nohup, background jobs)
    stays ignored. Handlers are installed only in the main thread. With
    `restore` false (the script itself) the signals are left ignored on exit,
    so that none can kill the process once its outcome is decided.
    """

    def __init__(self, restore: bool = True) -> None:
        self.finished = False
        self.pending: int | None = None
        self._depth = 0
        self._settled = False
        self._restore = restore
        self._saved: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        import signal
        import threading

        try:
            if threading.current_thread() is threading.main_thread():
                # Each handler is saved before it is replaced, so that one
                # replaced is always put back, whenever a signal lands.
                for name in ("SIGINT", "SIGTERM", "SIGHUP"):
                    if hasattr(signal, name):
                        signum = getattr(signal, name)
                        self._saved[signum] = signal.getsignal(signum)
                        if self._saved[signum] == signal.SIG_IGN:  # ignored by the parent: stays so
                            del self._saved[signum]
                        else:
                            signal.signal(signum, self._handle)
                if hasattr(signal, "SIGXFSZ"):  # a file-size limit becomes an error (EFBIG)
                    self._saved[signal.SIGXFSZ] = signal.getsignal(signal.SIGXFSZ)
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            return self
        except BaseException:  # a signal as the handlers go in: put back those installed, then go on
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        import signal

        self.settle()
        if not self._saved:
            return
        # A signal that lands while the handlers are swapped finds no Python
        # handler, and Python prints "Signal N ignored due to race condition"
        # with a traceback. The outcome is settled: such a signal changes
        # nothing, so say nothing of it either.
        previous = sys.unraisablehook

        def quiet(unraisable: object) -> None:
            if "race condition" not in str(getattr(unraisable, "exc_value", "")):
                previous(unraisable)  # type: ignore[arg-type]

        sys.unraisablehook = quiet
        for signum, handler in self._saved.items():
            # The default action would kill a process whose outcome is decided.
            signal.signal(signum, handler if self._restore else signal.SIG_IGN)  # type: ignore[arg-type]
        if self._restore:  # a caller's process goes on: its own hook again, once pending signals are checked
            signal.getsignal(signal.SIGINT)
            sys.unraisablehook = previous

    def _handle(self, signum: int, frame: object) -> None:
        """Note SIGNUM; raise Interrupted unless held or settled (the first one only)."""
        if self.pending is None:
            self.pending = signum
        if self._depth or self._settled or self.finished:
            return
        self._settled = True  # the run is failing now: the rollback must not be cut short
        raise Interrupted(signum)

    def check(self) -> None:
        """Raise Interrupted for a signal that arrived while held, unless the outcome is settled."""
        if self.pending is not None and not (self._settled or self.finished):
            self._settled = True
            raise Interrupted(self.pending)

    def hold(self) -> None:
        """Defer signals (nests): a step and its record must not be split by one."""
        self._depth += 1

    def release(self) -> None:
        """End one hold; after the last, raise Interrupted if a signal came meanwhile."""
        self._depth -= 1
        if not self._depth:
            self.check()

    def settle(self) -> None:
        """The outcome is decided (a failure being undone or reported): signals only wait from now on."""
        self._settled = True

    def succeed(self) -> None:
        """Every file is in place: a signal can no longer turn this into failure. Call it held."""
        self.finished = True


# The kinds of step in the undo journal, and what undoing each one does.
_ROOT = 0  # a folder made for -o, named by its path: remove it
_FOLDER = 1  # a folder made below DIR, by its node in _Tree: remove it
_TEMP = 2  # an Entry's temporary file made: remove it
_KEPT = 3  # an Entry's old file given a second name (its backup): remove that name
_ASIDE = 4  # an Entry's old file moved to its backup name: move it back
_NAMED = 5  # an Entry's new file given its real name: remove that name
_REPLACED = 6  # an Entry's new file put over the old one: put the backup back over it
_KINDS = 8  # a journal record is its subject times this, plus its kind
# Folder descriptors kept open at once: a share of the descriptor limit,
# within these bounds; others are reopened when needed.
_OPEN_FOLDERS: Final = (8, 256)


def _folder_budget() -> int:
    """Return how many folder descriptors a run keeps open: a quarter of the limit, within _OPEN_FOLDERS."""
    low, high = _OPEN_FOLDERS
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # Windows has no such limit on folders
        return high
    if soft == resource.RLIM_INFINITY:
        return high
    return max(low, min(high, soft // 4))


class _Tree:
    """Filesystem calls below DIR that never follow a symlink.

    With dir_fd (POSIX) a folder is an open descriptor, and each folder is
    opened relative to its parent with O_NOFOLLOW, so a symlink swapped in
    during the run is not followed either. Without it (Windows) a folder is a
    path and every step is checked with lstat first. Each folder seen is a
    node (its parent node, its name, its device and inode); only a few are
    kept open, and one reopened must be the same folder as before.
    """

    def __init__(self, root: str, use_dir_fd: bool) -> None:
        self.use_dir_fd = use_dir_fd
        self.root = root
        self.root_is_new = False  # made by this run: nothing was in it
        self._root: Handle | None = None
        self._nodes: dict[tuple[int, str], int] = {}  # (parent node, name) -> node; DIR is node 0
        self._parent: list[int] = [0]
        self._name: list[str] = [""]
        self._identity: list[int | None] = [None]  # device and inode, once opened
        self._made: set[int] = set()  # nodes this run made: nothing was in them
        self._open: dict[int, Handle] = {}  # node -> handle, least recently used first
        self._budget = _folder_budget() if use_dir_fd else _OPEN_FOLDERS[1]

    def open_root(self, follow: bool = True) -> os.stat_result:
        """Open DIR itself and return its status; DIR may be a symlink, since the user named it, unless not FOLLOW."""
        if self.use_dir_fd:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC | (0 if follow else O_NOFOLLOW))
            self._root = fd
            return os.fstat(fd)
        st = os.stat(self.root, follow_symlinks=follow)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", self.root)
        self._root = self.root
        return st

    def is_open(self) -> bool:
        """Tell whether DIR is open (once opened, until closed)."""
        return self._root is not None

    def close(self) -> None:
        """Close every folder descriptor (a later call reopens DIR's folders, never DIR)."""
        handles = list(self._open.values()) + [self._root]
        self._open.clear()
        self._root = None
        for handle in handles:
            if isinstance(handle, int):
                _close_quietly(handle)

    def _at(self, folder: Handle, name: str) -> tuple[str, int | None]:
        """Return the path and dir_fd that name NAME in FOLDER.

        A path is resolved anew by every call, so it is looked at anew, part
        by part (see folder()), right before each call that uses it.
        """
        if isinstance(folder, int):
            return name, folder
        parts = tuple(part for part in folder[len(self.root):].split(os.sep) if part)
        if self.folder(parts, False) is None:
            raise FileNotFoundError(errno.ENOENT, "its folder is gone", folder)
        return os.path.join(folder, name), None

    def lstat(self, folder: Handle, name: str) -> os.stat_result:
        """Return the status of NAME in FOLDER, not following a symlink."""
        path, fd = self._at(folder, name)
        return os.stat(path, dir_fd=fd, follow_symlinks=False)

    def open(self, folder: Handle, name: str, flags: int, mode: int = 0o666) -> int:
        """Open NAME in FOLDER; never follows a symlink at NAME."""
        path, fd = self._at(folder, name)
        return os.open(path, flags | O_NOFOLLOW | O_BINARY | O_CLOEXEC, mode, dir_fd=fd)

    def link(self, folder: Handle, src: str, dst: str) -> None:
        """Make DST a second name of SRC's file, even if SRC is a symlink; fails if DST exists."""
        (a, fd), (b, _) = self._at(folder, src), self._at(folder, dst)
        if LINK_NOFOLLOW:
            os.link(a, b, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        else:  # Windows: CreateHardLink does not follow a link either
            os.link(a, b)

    def rename(self, folder: Handle, src: str, dst: str, replace: bool) -> None:
        """Rename SRC to DST in FOLDER, atomically replacing DST when REPLACE."""
        (a, fd), (b, _) = self._at(folder, src), self._at(folder, dst)
        (os.replace if replace else os.rename)(a, b, src_dir_fd=fd, dst_dir_fd=fd)

    def unlink(self, folder: Handle, name: str) -> None:
        """Remove the file NAME from FOLDER."""
        path, fd = self._at(folder, name)
        os.unlink(path, dir_fd=fd)

    def mkdir(self, folder: Handle, name: str) -> None:
        """Make the folder NAME in FOLDER (mode 0o777 less the umask)."""
        path, fd = self._at(folder, name)
        os.mkdir(path, 0o777, dir_fd=fd)

    def chmod(self, fd: int, folder: Handle, name: str, mode: int) -> None:
        """Set the permission bits of the open file FD, also known as NAME."""
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:
            os.chmod(self._at(folder, name)[0], mode)

    def sync_folder(self, folder: Handle) -> None:
        """Flush FOLDER's entries to disk (POSIX only; Windows cannot)."""
        if isinstance(folder, int):
            os.fsync(folder)
        elif os.name == "posix":
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def is_new(self, parts: tuple[str, ...]) -> bool:
        """Tell whether this run created the folder PARTS (so it held nothing before)."""
        if not parts:
            return self.root_is_new
        node = 0
        for part in parts:
            found = self._nodes.get((node, part))
            if found is None:
                return False
            node = found
        return node in self._made

    def folder(self, parts: tuple[str, ...], create: bool, journal: _Journal | None = None) -> Handle | None:
        """Return a handle on DIR/PARTS, making missing folders when CREATE (recorded in JOURNAL).

        Returns None when a folder is missing and CREATE is false. Raises
        TargetError when a part exists but is not a real directory, or is not
        the folder seen there before.
        """
        if self._root is None:  # DIR itself was never opened
            return None
        chain = [0]
        for part in parts:
            found = self._nodes.get((chain[-1], part))
            if found is None:
                break
            chain.append(found)
        depth = len(chain) - 1
        while depth and chain[depth] not in self._open:
            depth -= 1
        if not self.use_dir_fd:  # a path is resolved anew at each use: look at every part again, each time
            depth = 0
        handle = self._touch(chain[depth]) if depth else self._root
        for level in range(depth, len(parts)):  # open the rest, each relative to its parent
            known = chain[level + 1] if level + 1 < len(chain) else None
            child = self._open_folder(handle, chain[level], parts, level, known, create, journal)
            if child is None:
                return None
            handle = child
            if known is None:
                chain.append(self._nodes[(chain[level], parts[level])])
        return handle

    def _touch(self, node: int) -> Handle:
        """Return NODE's open handle, now the most recently used."""
        handle = self._open.pop(node)
        self._open[node] = handle
        return handle

    def _open_folder(
        self,
        parent: Handle,
        parent_node: int,
        parts: tuple[str, ...],
        depth: int,
        known: int | None,
        create: bool,
        journal: _Journal | None,
    ) -> Handle | None:
        """Open (or make, when CREATE) the folder PARTS[:DEPTH + 1] in PARENT; return its handle.

        KNOWN is its node if it was seen before: then it must be the same
        folder. Returns None when it is missing and is not to be made.
        """
        name = parts[depth]
        try:
            handle = self._enter(parent, name)
        except FileNotFoundError:
            if known is not None and known not in self._made and self._identity[known] is not None:
                raise FileNotFoundError(errno.ENOENT, "its folder is gone") from None
            if not create or journal is None:
                return None
            if known is None:
                known = self._new_node(parent_node, name)
            try:
                journal.do(_FOLDER, known, lambda: self.mkdir(parent, name))
                self._made.add(known)
            except FileExistsError:  # made by someone else meanwhile: not ours
                pass
            return self._open_folder(parent, parent_node, parts, depth, known, False, None)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP, getattr(errno, "EMLINK", -1)):
                raise
            raise TargetError(self._not_a_folder("/".join(parts[: depth + 1]), parent, name)) from None
        try:
            st = os.fstat(handle) if isinstance(handle, int) else os.lstat(handle)
            identity = (st.st_dev << 64) | st.st_ino
            if known is None:
                known = self._new_node(parent_node, name)
            if self._identity[known] is None:
                self._identity[known] = identity
            elif self._identity[known] != identity:
                raise TargetError(f"{quote('/'.join(parts[: depth + 1]))} was replaced by another folder during the run")
        except BaseException:
            if isinstance(handle, int):
                _close_quietly(handle)
            raise
        self._open[known] = handle
        if len(self._open) > self._budget:  # close the least recently used
            oldest = next(iter(self._open))
            dropped = self._open.pop(oldest)
            if isinstance(dropped, int):
                os.close(dropped)
        return handle

    def _new_node(self, parent: int, name: str) -> int:
        """Return a new node for the folder NAME in PARENT, not yet opened."""
        node = len(self._parent)
        self._parent.append(parent)
        self._name.append(name)
        self._identity.append(None)
        self._nodes[(parent, name)] = node
        return node

    def _enter(self, parent: Handle, name: str) -> Handle:
        """Return a handle on the folder NAME in PARENT; raise if it is not a real directory."""
        if isinstance(parent, int):
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, dir_fd=parent)
        path = os.path.join(parent, name)
        st = os.lstat(path)
        reparse = getattr(st, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
        if not stat.S_ISDIR(st.st_mode) or reparse:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return path

    def _not_a_folder(self, shown: str, parent: Handle, name: str) -> str:
        """Return the message for a path part SHOWN that is not a real directory."""
        try:
            what = _describe(self.lstat(parent, name).st_mode)
        except OSError:
            what = "not a real directory"
        return f"{quote(shown)} is {what}, not a real directory"

    def parts_of(self, node: int) -> tuple[str, ...]:
        """Return the path of NODE below DIR, as parts."""
        parts: list[str] = []
        while node:
            parts.append(self._name[node])
            node = self._parent[node]
        return tuple(reversed(parts))

    def remove_folder(self, node: int) -> None:
        """Remove the empty folder NODE, which this run made (and not one put in its place)."""
        if self.folder(self.parts_of(node), False) is None:  # raises if it is another folder now
            raise FileNotFoundError(errno.ENOENT, "it is gone")
        handle = self._open.pop(node, None)
        if isinstance(handle, int):
            _close_quietly(handle)
        parent = self.folder(self.parts_of(self._parent[node]), False)
        if parent is None:
            raise FileNotFoundError(errno.ENOENT, "its folder is gone")
        path, fd = self._at(parent, self._name[node])
        os.rmdir(path, dir_fd=fd)
        self._made.discard(node)


class _Journal:
    """Every filesystem step one run took, in order, so that all can be undone.

    `do(kind, subject, act)` records a step and makes it, with signals held.
    `rollback()` undoes the steps in reverse; `finish()`, after success,
    drops the second names of replaced files, and from then on nothing is
    undone. A record is one number, its subject times 8 plus its kind, so
    that it is written (and dropped) in one step that no interrupt can
    split; the subject is the path made for -o (_ROOT, an index into
    `_roots`), a folder's node (_FOLDER), or an entry's number in RECORDS
    (the rest). A step whose name a later step took away (a temporary file
    renamed into place) finds nothing left to undo.
    """

    __slots__ = ("_tree", "_guard", "_records", "_token", "_steps", "_roots", "_done")

    def __init__(self, tree: _Tree, guard: SignalGuard, records: _Records) -> None:
        from array import array

        self._tree = tree
        self._guard = guard
        self._records = records
        self._token = os.urandom(6).hex()
        self._steps = array("q")  # subject * _KINDS + kind, in the order made
        self._roots: list[str] = []
        self._done = False  # the run has succeeded: nothing is to be undone

    def temp_name(self, entry: Entry) -> str:
        """Return the name of ENTRY's temporary file."""
        attempt = entry.attempt
        return f"{TEMP_PREFIX}{self._token}-{entry.number}" + (f"-{attempt}" if attempt else "")

    def backup_name(self, entry: Entry) -> str:
        """Return the second name of the file ENTRY replaces."""
        return self.temp_name(entry) + ".old"

    def do(self, kind: int, subject: object, act: Callable[[], object]) -> None:
        """Record a step as KIND on SUBJECT, then make it with ACT; no signal can split the two.

        The record comes first, so that even a KeyboardInterrupt where no
        handler holds it (a library caller), raised the moment the call
        returns, finds the step recorded. An OSError means the call made
        nothing, and the record goes; after any other exception the step may
        or may not have been made, so each undo checks before it acts.
        """
        guard = self._guard
        guard.hold()
        try:
            if isinstance(subject, Entry):
                number = subject.number
            elif isinstance(subject, str):
                number = len(self._roots)
                self._roots.append(subject)  # an unused path, if an interrupt comes before the record
            else:
                assert isinstance(subject, int)
                number = subject
            self._steps.append(number * _KINDS + kind)
            try:
                act()
            except OSError:
                self._steps.pop()
                raise
        finally:
            guard.release()

    def _subject(self, kind: int, number: int) -> object:
        """Return what a record of KIND about NUMBER is about: a path, a node, or an Entry."""
        if kind == _ROOT:
            return self._roots[number]
        if kind == _FOLDER:
            return number
        return Entry(self._records, number)

    def made_folders(self) -> list[int]:
        """Return the nodes of the folders this run made below DIR, in order."""
        return [step // _KINDS for step in self._steps if step % _KINDS == _FOLDER]

    def rollback(self) -> list[str]:
        """Undo every step, last first, going on past failures; return what could not be undone.

        After success nothing is undone: an exception that cut finish() short
        (an interrupt in a library) only has it go on dropping second names.
        """
        problems: list[str] = []
        if self._done:
            return self.finish()
        steps = self._steps
        while steps:
            # Dropped once undone, and every undo looks before it acts: an
            # interrupt (a library's Ctrl-C; the command line holds signals
            # here) has the same step undone again, never skipped.
            number, kind = divmod(steps[-1], _KINDS)
            subject = self._subject(kind, number)
            try:
                self._undo(kind, subject)
            except FileNotFoundError:
                pass
            except KeyboardInterrupt:
                continue
            except CLEANUP_ERRORS as exc:
                problems.append(self._failed(kind, subject, exc))
            steps.pop()
        return problems

    def _undo(self, kind: int, subject: object) -> None:
        """Undo one step: the inverse of KIND on SUBJECT (see the kinds above)."""
        tree = self._tree
        if kind == _ROOT:
            assert isinstance(subject, str)
            tree.close()  # DIR cannot be removed while it is open, on Windows
            os.rmdir(subject)
            return
        if kind == _FOLDER:
            assert isinstance(subject, int)
            tree.remove_folder(subject)
            return
        assert isinstance(subject, Entry)
        folder = tree.folder(subject.folder_parts, False)
        if folder is None:
            return
        if kind == _TEMP:
            if subject.staged:  # else dropped already: its body was the same
                tree.unlink(folder, self.temp_name(subject))
        elif kind == _KEPT:
            # The second name goes only once the first is the old file again:
            # if putting it back failed, the second name is its only one.
            backup = tree.lstat(folder, self.backup_name(subject))
            try:
                leaf = tree.lstat(folder, subject.leaf)
            except FileNotFoundError:
                leaf = None
            if leaf is None or (leaf.st_dev, leaf.st_ino) != (backup.st_dev, backup.st_ino):
                shown = "/".join(subject.folder_parts + (self.backup_name(subject),))
                raise OSError(errno.EEXIST, f"its old content is kept as {quote(shown)}")
            tree.unlink(folder, self.backup_name(subject))
        elif kind == _ASIDE:
            tree.rename(folder, self.backup_name(subject), subject.leaf, replace=False)
        elif kind == _NAMED and self._named(folder, subject):
            tree.unlink(folder, subject.leaf)
        elif kind == _REPLACED:
            tree.rename(folder, self.backup_name(subject), subject.leaf, replace=True)

    def _named(self, folder: Handle, entry: Entry) -> bool:
        """Tell whether ENTRY's new file holds its real name (a step may be recorded and never made)."""
        if not entry.staged:  # the temporary name was dropped after the link
            return True
        tree = self._tree
        try:
            temp = tree.lstat(folder, self.temp_name(entry))
        except FileNotFoundError:  # renamed into place
            return True
        leaf = tree.lstat(folder, entry.leaf)  # nothing there: nothing to undo
        # Both names one file: linked into place. Else what is there is not ours.
        return (temp.st_dev, temp.st_ino) == (leaf.st_dev, leaf.st_ino)

    def _failed(self, kind: int, subject: object, exc: BaseException) -> str:
        """Return what to tell the user when undoing KIND on SUBJECT failed with EXC."""
        if kind == _ROOT:
            return f"could not remove folder {quote(str(subject))}: {_reason(exc)}"
        if kind == _FOLDER:
            assert isinstance(subject, int)
            return f"could not remove folder {quote('/'.join(self._tree.parts_of(subject)))}: {_reason(exc)}"
        assert isinstance(subject, Entry)
        if kind == _TEMP:
            return f"could not remove {quote(self.temp_name(subject))}: {_reason(exc)}"
        return f"could not restore {quote(subject.name)}: {_reason(exc)}"

    def finish(self) -> list[str]:
        """After success, drop the second names of replaced files; return what could not be dropped.

        From here on the run has succeeded and nothing is undone. A failure
        leaves only a leftover, named in the list; an interrupt (a library's
        Ctrl-C) gets the name tried once more; another exception (SystemExit,
        say) is raised once every name has been tried. Each record goes once
        handled, so finish() cut short by an exception can be called again.
        """
        self._done = True
        problems: list[str] = []
        pending: BaseException | None = None
        steps = self._steps
        while steps:
            number, kind = divmod(steps[-1], _KINDS)
            if kind in (_KEPT, _ASIDE):
                subject = Entry(self._records, number)
                for last_try in (False, True):
                    try:
                        folder = self._tree.folder(subject.folder_parts, False)
                        if folder is not None:
                            self._tree.unlink(folder, self.backup_name(subject))
                    except FileNotFoundError:
                        pass
                    except BaseException as exc:  # even an interrupt: the run has succeeded
                        if isinstance(exc, KeyboardInterrupt) and not last_try:
                            continue
                        shown = "/".join(subject.folder_parts + (self.backup_name(subject),))
                        problems.append(
                            f"{quote(subject.name)} was replaced, but its old copy {quote(shown)} could not be"
                            f" removed ({_reason(exc)}); delete it by hand"
                        )
                        if not isinstance(exc, CLEANUP_ERRORS) and pending is None:
                            pending = exc
                    break
            steps.pop()
        self._roots.clear()
        if pending is not None:
            raise pending
        return problems


def _describe(mode: int) -> str:
    """Return what kind of entry MODE is, for a message."""
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _rename_noreplace() -> Callable[[int, str, str], None] | None:
    """Return renameat2(RENAME_NOREPLACE) as a function of (folder fd, old, new), where Linux has it.

    It gives a new file its name in one call, failing if the name is taken,
    where link-then-unlink takes two.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (ImportError, OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def rename(folder: int, old: str, new: str) -> None:
        if call(folder, os.fsencode(old), folder, os.fsencode(new), 1) != 0:  # 1: RENAME_NOREPLACE
            code = ctypes.get_errno()
            raise (FileExistsError if code == errno.EEXIST else OSError)(code, os.strerror(code), new)

    return rename


def _close_quietly(*fds: int | None) -> None:
    """Close descriptors during cleanup, when the run's outcome is already decided."""
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except (OSError, KeyboardInterrupt):
                pass


_STATUSES: Final = ("new", "same", "changed")
_WAS_LINK: Final = -2  # in _Records.old: the target is a symlink (-1: nothing was there, or not looked at)


class _Records:
    """What a run keeps about each of its blocks, as columns: a few bytes a block, not an object.

    A million tiny blocks must fit in a few hundred MiB, and a Python object
    per block costs more than everything else kept about it. Row N is the
    block numbered N (from 0) in bundle order; an Entry is a view of one row.
    """

    __slots__ = ("names", "places", "status", "staged", "old", "attempts")

    def __init__(self) -> None:
        from array import array

        self.names: list[str] = []
        self.places = _Places()  # where each FILE line is
        self.status = bytearray()  # an index into _STATUSES
        self.staged = bytearray()  # 1 while the body's temporary file exists under its temporary name
        self.old = array("i")  # the permission bits of the file at the target, or _WAS_LINK, or -1
        self.attempts: dict[int, int] = {}  # a temporary name tried again: how many names were taken before

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, number: int) -> Entry:
        if not 0 <= number < len(self.names):
            raise IndexError(number)
        return Entry(self, number)

    def __iter__(self) -> Iterator[Entry]:
        return (Entry(self, number) for number in range(len(self.names)))

    def append(self, name: str, origin: Origin) -> Entry:
        """Add a row for the block NAME, whose FILE line is ORIGIN; return its entry."""
        self.names.append(name)
        self.places.append(origin)
        self.status.append(0)
        self.staged.append(0)
        self.old.append(-1)
        return Entry(self, len(self.names) - 1)

    def pop(self) -> None:
        """Drop the last row (a block that turned out not to be writable: nothing was staged for it)."""
        assert not self.staged[-1], "a staged block stays, so that rollback removes its temporary file"
        self.names.pop()
        self.places.pop()
        self.status.pop()
        self.staged.pop()
        self.old.pop()
        self.attempts.pop(len(self.names), None)


class Entry:
    """One block on its way to disk: its row of _Records, seen as an object.

    Made when handed out and thrown away after. The folder and leaf are
    found from the name when needed, and the journal knows what was done.
    """

    __slots__ = ("_records", "number")

    def __init__(self, records: _Records, number: int) -> None:
        self._records = records
        self.number = number

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {self.status!r})"

    @property
    def name(self) -> str:
        """The block's name."""
        return self._records.names[self.number]

    @property
    def line(self) -> int:
        """The line of the block's FILE marker."""
        return self._records.places.line(self.number)

    @property
    def status(self) -> str:
        """"new" until the target is compared, then "same" or "changed"."""
        return _STATUSES[self._records.status[self.number]]

    @status.setter
    def status(self, value: str) -> None:
        self._records.status[self.number] = _STATUSES.index(value)

    @property
    def staged(self) -> bool:
        """Does the body's temporary file exist under its temporary name?"""
        return bool(self._records.staged[self.number])

    @staged.setter
    def staged(self, value: bool) -> None:
        self._records.staged[self.number] = value

    @property
    def attempt(self) -> int:
        """How many temporary names were found taken before this block's (0 nearly always)."""
        return self._records.attempts.get(self.number, 0)

    @attempt.setter
    def attempt(self, value: int) -> None:
        self._records.attempts[self.number] = value

    @property
    def old_mode(self) -> int | None:
        """The permission bits of the file at the target, if a file is there."""
        old = self._records.old[self.number]
        return old if old >= 0 else None

    @old_mode.setter
    def old_mode(self, mode: int) -> None:
        self._records.old[self.number] = mode

    @property
    def old_is_link(self) -> bool:
        """Is a symlink at the target?"""
        return self._records.old[self.number] == _WAS_LINK

    def found_link(self) -> None:
        """Note that a symlink is at the target."""
        self._records.old[self.number] = _WAS_LINK

    @property
    def folder_parts(self) -> tuple[str, ...]:
        """The folders of the name, below DIR."""
        return tuple(self.name.split("/")[:-1])

    @property
    def leaf(self) -> str:
        """The last part of the name."""
        return self.name.rpartition("/")[2]


def _root_prefixes(root: str) -> list[str]:
    """Return the paths of ROOT and of each folder above it, innermost first, as the kernel reads them.

    Nothing is collapsed as text: `link/..` stays the parent of the link's
    target, as every call made with these paths will find it.
    """
    path = root if os.path.isabs(root) else os.path.join(os.getcwd(), root)
    prefixes = []
    head, tail = os.path.split(path)  # split, unlike normpath, keeps `..` and links as they are
    if not tail:  # "out/": the trailing separator
        head, tail = os.path.split(head)
    while tail:
        prefixes.append(os.path.join(head, tail))
        head, tail = os.path.split(head)
    return prefixes


def _missing_folders(root: str) -> list[str]:
    """Return the paths, outermost first, of the folders to make so that ROOT exists."""
    missing = []
    for path in _root_prefixes(root):
        try:
            os.stat(path)  # following links: the user named this path
            break
        except (FileNotFoundError, NotADirectoryError):  # a file on the way: making it says so
            missing.append(path)
    missing.reverse()
    return missing


def _after_making(missing: list[str]) -> str | None:
    """Return the folder that exists now which MISSING's last path names once MISSING is made; None if none.

    For a dry run of `-o new/..`: the real run makes `new`, and then DIR is
    the folder above it, whose targets must be looked at as the run would.
    """
    here = os.path.dirname(missing[0])  # exists
    made = 0  # folders below HERE that the run would make
    for path in missing:
        part = os.path.basename(path)
        if part in ("", "."):
            continue
        if part == ".." and made:
            made -= 1
        elif made or not os.path.lexists(os.path.join(here, part)):
            made += 1
        else:
            here = os.path.join(here, part)
            if not os.path.isdir(here):  # a file or a dangling link on the way: the run fails here too
                return here
    return None if made else here


class Writer:
    """Stage bodies next to their targets; commit all at once, or roll back.

    Use as: `entry = add(name, line)`, `write(entry, data)` for each piece,
    `end(entry)`; then `commit()`. Problems with targets are collected in
    `errors` so that all are reported; `commit()` raises them. Any exception
    (KeyboardInterrupt included) must be followed by `rollback()`, which
    replays the journal backwards and leaves DIR as it was. With `dry_run`
    nothing is written: targets are only compared. The Writer prints nothing
    and installs no signal handler: a caller passes an entered SignalGuard.
    """

    def __init__(
        self,
        root: str,
        *,
        force: bool = False,
        dry_run: bool = False,
        sync: bool = False,
        guard: SignalGuard | None = None,
        use_dir_fd: bool = HAVE_DIR_FD,
    ) -> None:
        self.root = root
        self.force = force
        self.dry_run = dry_run
        self.sync = sync
        self.guard = guard or SignalGuard()  # one not entered catches no signal
        self.entries = _Records()  # every block added, in bundle order
        self.errors: list[SplitError] = []
        self._tree = _Tree(root, use_dir_fd)
        self._journal = _Journal(self._tree, self.guard, self.entries)
        self._started = False
        self._have_root = False
        # The block being staged (one at a time): its temporary file and the
        # target it is compared with, while open, and whether they differ.
        self._fd: int | None = None
        self._compare_fd: int | None = None
        self._differs = False
        self._place_new: Callable[[Entry, Handle], None] = self._place_by_link
        self._renameat2_works = True  # until this filesystem refuses renameat2's RENAME_NOREPLACE

    # -- staging -------------------------------------------------------------

    def _start(self) -> bool:
        """Make sure DIR exists (unless dry-run); return False if it does not (or cannot)."""
        if self._started:
            return self._have_root
        self._started = True
        root = self.root
        missing: list[str] = []
        try:
            missing = _missing_folders(root)
            if missing:
                self._check_makeable(missing[0])  # so that a dry run fails where the run would
            if self.dry_run and missing:
                existing = _after_making(missing)
                if existing is None:  # DIR would be new: every target is new
                    return False
                self._tree.root = existing  # `new/..`: once `new` is made, DIR is a folder that exists now
                missing = []
            for path in missing:
                try:
                    self._journal.do(_ROOT, path, lambda: os.mkdir(path))
                    self._tree.root_is_new = path == missing[-1]
                except FileExistsError:  # `..`, a dangling link, or made meanwhile: not ours
                    self._tree.root_is_new = False
            self._tree.open_root()
        except NotADirectoryError:
            shown = quote(root)
            self.errors.append(TargetError(
                f"output folder {shown} is not a directory; name a folder with -o" if not missing
                else f"cannot make the output folder {shown}: a part of its path is not a directory"))
            return False
        except OSError as exc:
            self.errors.append(DiskError(f"cannot make the output folder {quote(root)}: {_reason(exc)}"))
            return False
        self._have_root = True
        return True

    @staticmethod
    def _check_makeable(path: str) -> None:
        """Raise the error that making the folder PATH would meet (for a dry run)."""
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", parent)
        if os.path.lexists(path):  # a dangling symlink: mkdir would fail, and so would the next step
            raise FileNotFoundError(errno.ENOENT, "a part of its path is a symlink to nothing", path)

    def add(self, name: str, origin: Origin) -> Entry | None:
        """Look at NAME's target and start staging its body; None if it cannot be written.

        ORIGIN is the block's FILE line, or the Open event (its line is found only if needed).
        """
        entry = self.entries.append(name, origin)  # from now on, rollback knows of it
        self._differs = False
        try:
            if not self._start():
                return entry  # dry run into a missing DIR: all new (or DIR cannot be made: an error)
            parts = entry.folder_parts
            folder = self._tree.folder(parts, not self.dry_run, self._journal)
            if folder is None and not self.dry_run:  # made, or found made, and gone again before it was opened
                raise TargetError("its folder disappeared during the run")
            if folder is not None and not self._tree.is_new(parts):
                self._examine(entry, folder)
            if folder is not None and not self.dry_run and (entry.status == "new" or self.force):
                self._stage(entry, folder)
        except SplitError as exc:
            _close_quietly(self._compare_fd)
            self._compare_fd = None
            self.errors.append(TargetError.cannot("write", name, exc.message, entry.line))
            if not entry.staged:  # else its temporary file may exist: the row stays for the rollback
                self.entries.pop()
            return None
        except OSError as exc:
            raise DiskError.cannot("write", name, exc, entry.line) from None
        return entry

    def _examine(self, entry: Entry, folder: Handle) -> None:
        """Find out what is at ENTRY's target; open an existing file to compare."""
        leaf = entry.leaf
        try:
            st = self._tree.lstat(folder, leaf)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            entry.status = "changed"
            entry.found_link()
            self._differs = True
        elif stat.S_ISREG(st.st_mode):
            fd = self._tree.open(folder, leaf, os.O_RDONLY | O_NONBLOCK)
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
                os.close(fd)
                raise TargetError("it changed while it was being examined")
            self._compare_fd = fd
            entry.status = "changed"  # until the comparison says "same"
            entry.old_mode = stat.S_IMODE(st.st_mode) & 0o777
        else:
            raise TargetError(f"it is {_describe(st.st_mode)}; only files are replaced")

    def _stage(self, entry: Entry, folder: Handle) -> None:
        """Create ENTRY's temporary file, never reusing an existing name."""
        tree = self._tree

        def make() -> None:
            self._fd = tree.open(folder, self._journal.temp_name(entry), os.O_WRONLY | os.O_CREAT | os.O_EXCL)

        entry.staged = True  # before the step, like its record: an interrupt as the file appears finds it named
        while True:
            try:
                self._journal.do(_TEMP, entry, make)
            except FileExistsError:  # not this run's: try the next name
                entry.attempt += 1
                continue
            return

    def write(self, entry: Entry, data: Buffer | memoryview) -> None:
        """Stage DATA, the next piece of ENTRY's body, and compare it with the target."""
        try:
            if self._compare_fd is not None:
                self._compare(data)
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise DiskError.cannot("write", entry.name, exc, entry.line) from None

    def _compare(self, data: Buffer | memoryview) -> None:
        """Compare DATA with the next bytes of the target; stop comparing at the first difference."""
        fd = self._compare_fd
        assert fd is not None
        old = b""
        while len(old) < len(data):
            more = os.read(fd, len(data) - len(old))
            if not more:
                break
            old += more
        if old != data:
            self._differs = True
            self._compare_fd = None
            os.close(fd)

    def end(self, entry: Entry) -> None:
        """Finish ENTRY's body: settle its status and close its temporary file."""
        try:
            if self._compare_fd is not None:
                fd = self._compare_fd
                self._compare_fd = None
                try:
                    self._differs = os.read(fd, 1) != b""
                finally:
                    os.close(fd)
            if entry.status == "changed" and not self._differs:
                entry.status = "same"
            if self._fd is not None:
                mode = entry.old_mode
                if entry.status == "changed" and mode is not None:
                    folder = self._tree.folder(entry.folder_parts, False)
                    assert folder is not None
                    self._tree.chmod(self._fd, folder, self._journal.temp_name(entry), mode)
                if self.sync:
                    os.fsync(self._fd)
                fd = self._fd
                self._fd = None
                os.close(fd)
            if entry.status == "same":
                self._drop(entry)
        except OSError as exc:
            raise DiskError.cannot("write", entry.name, exc, entry.line) from None
        if entry.status == "changed" and not self.force:
            self.errors.append(
                ConflictError(
                    f"{quote(entry.name)} exists with other content; use -f to replace it", entry.line, entry.name
                )
            )

    def _drop(self, entry: Entry) -> None:
        """Remove ENTRY's temporary file, if any: its body is what the target holds."""
        if entry.staged:
            folder = self._tree.folder(entry.folder_parts, False)
            if folder is not None:
                self._tree.unlink(folder, self._journal.temp_name(entry))
            entry.staged = False

    # -- commit and rollback -----------------------------------------------

    def commit(self) -> list[str]:
        """Move every staged file into place; return warnings about leftovers.

        Raises the collected errors instead, if there are any.
        """
        if self.errors:
            raise _combined(self.errors)
        if self.dry_run:
            return []
        self._place_new = self._choose_placement()
        guard = self.guard
        guard.hold()  # a signal now waits: before the last placement it undoes them all
        try:
            for entry in self.entries:
                if entry.staged:
                    guard.check()
                    self._place(entry)
            guard.succeed()  # every file is in place: a signal can no longer turn this into failure
        finally:
            guard.release()
        if self.sync:  # still part of the commit: if it fails, roll back
            try:
                self._sync_folders()
            except (OSError, SplitError) as exc:
                raise DiskError(f"cannot flush the output folder to disk: {_reason(exc)}") from None
        return self._journal.finish()

    def _choose_placement(self) -> Callable[[Entry, Handle], None]:
        """Return how new files get their names in this commit, without replacing anything."""
        if os.name == "nt":
            return self._place_by_rename  # Windows' rename itself refuses to replace
        if self._tree.use_dir_fd:
            new_files = sum(entry.status == "new" and entry.staged for entry in self.entries)
            rename = _rename_noreplace() if new_files >= MANY_FILES else None
            if rename is not None:
                return lambda entry, folder: self._place_by_renameat2(rename, entry, folder)
        return self._place_by_link

    def _place(self, entry: Entry) -> None:
        """Give ENTRY's temporary file its real name, keeping a way back."""
        try:
            folder = self._tree.folder(entry.folder_parts, False)
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "its folder is gone")
            if entry.status == "new":
                self._place_new(entry, folder)
            else:
                self._replace(entry, folder)
        except FileExistsError:
            raise TargetError.cannot("write", entry.name, "something appeared there during the run", entry.line) from None
        except OSError as exc:
            raise DiskError.cannot("write", entry.name, exc, entry.line) from None
        except SplitError as exc:
            raise TargetError.cannot("write", entry.name, exc.message, entry.line) from None

    def _place_by_renameat2(self, rename: Callable[[int, str, str], None], entry: Entry, folder: Handle) -> None:
        """Name a new file with one renameat2(RENAME_NOREPLACE)."""
        assert isinstance(folder, int)
        temp = self._journal.temp_name(entry)
        try:
            self._journal.do(_NAMED, entry, lambda: rename(folder, temp, entry.leaf))
        except FileExistsError:
            raise
        except OSError as exc:  # this filesystem cannot: link and unlink from now on
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", -1)):
                raise
            self._renameat2_works = False
            self._place_new = self._place_by_link
            self._place_by_link(entry, folder)

    def _place_by_link(self, entry: Entry, folder: Handle) -> None:
        """Name a new file by a hard link (which, unlike rename, never replaces), then drop the temporary name."""
        temp = self._journal.temp_name(entry)
        try:
            self._journal.do(_NAMED, entry, lambda: self._tree.link(folder, temp, entry.leaf))
        except OSError as exc:
            if exc.errno not in NO_LINK_ERRNOS:
                raise
            self._place_new = self._place_by_lstat_rename  # no hard links on this filesystem
            self._place_by_lstat_rename(entry, folder)
            return
        self._tree.unlink(folder, temp)
        entry.staged = False  # no temporary name is left

    def _place_by_lstat_rename(self, entry: Entry, folder: Handle) -> None:
        """Name a new file where hard links are missing: renameat2 where it works, else a look, then a rename."""
        rename = _rename_noreplace() if isinstance(folder, int) and self._renameat2_works else None
        if rename is not None:  # where it exists, a rename that never replaces leaves no gap to race
            self._place_new = lambda entry, folder: self._place_by_renameat2(rename, entry, folder)
            self._place_new(entry, folder)
            return
        try:
            self._tree.lstat(folder, entry.leaf)
            raise FileExistsError(errno.EEXIST, "File exists")
        except FileNotFoundError:
            pass
        self._place_by_rename(entry, folder)

    def _place_by_rename(self, entry: Entry, folder: Handle) -> None:
        """Name a new file by a plain rename (on Windows it refuses to replace)."""
        temp = self._journal.temp_name(entry)
        self._journal.do(_NAMED, entry, lambda: self._tree.rename(folder, temp, entry.leaf, replace=False))

    def _replace(self, entry: Entry, folder: Handle) -> None:
        """Put ENTRY's new file over the old one atomically, the old one kept under a second name."""
        tree, journal = self._tree, self._journal
        leaf, temp, backup = entry.leaf, journal.temp_name(entry), journal.backup_name(entry)
        # A symlink is moved aside rather than linked, since some systems would
        # give its target the second name.
        moved = entry.old_is_link
        if not moved:
            try:
                journal.do(_KEPT, entry, lambda: tree.link(folder, leaf, backup))
            except OSError as exc:
                if exc.errno not in NO_LINK_ERRNOS:
                    raise
                moved = True
        if moved:
            now = tree.lstat(folder, leaf).st_mode  # a link failing may mean a folder took the file's place
            if not (stat.S_ISREG(now) or stat.S_ISLNK(now)):
                raise TargetError(f"it changed during the run: it is {_describe(now)} now; only files are replaced")
            journal.do(_ASIDE, entry, lambda: tree.rename(folder, leaf, backup, replace=False))
        journal.do(_REPLACED, entry, lambda: tree.rename(folder, temp, leaf, replace=True))

    def rollback(self) -> list[str]:
        """Undo everything this run did below DIR; return what could not be undone."""
        guard = self.guard
        guard.hold()  # already failing: a signal now only waits for the end
        guard.settle()
        try:
            self._close_files()
            problems = self._journal.rollback()
            self._tree.close()
        finally:
            guard.release()
        return problems

    def _sync_folders(self) -> None:
        """Flush every folder that gained an entry (after --sync)."""
        tree = self._tree
        seen: set[tuple[str, ...]] = set()
        wanted = [e.folder_parts for e in self.entries if e.status != "same"]
        wanted += [tree.parts_of(node)[:-1] for node in self._journal.made_folders()]
        for parts in wanted:
            if parts not in seen:
                seen.add(parts)
                folder = tree.folder(parts, False)
                if folder is not None:
                    tree.sync_folder(folder)

    def read_target(self, entry: Entry, out: IO[bytes]) -> None:
        """Copy what ENTRY's target holds now to OUT in chunks: nothing for no file or a link (never followed)."""
        folder = self._tree.folder(entry.folder_parts, False) if self._have_root else None
        if folder is None or entry.old_is_link or entry.status == "new":
            return
        fd = self._tree.open(folder, entry.leaf, os.O_RDONLY | O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            while True:
                data = os.read(fd, CHUNK_SIZE)
                if not data:
                    return
                out.write(data)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release every descriptor the writer holds."""
        self._close_files()
        self._tree.close()

    def _close_files(self) -> None:
        """Close the files of the block being staged, if any."""
        _close_quietly(self._fd, self._compare_fd)
        self._fd = self._compare_fd = None


# ---------------------------------------------------------------------------
# Pack: files to a bundle, the inverse of splitting
# ---------------------------------------------------------------------------


# How much of a spooled body or bundle stays in memory before it spills to a temporary file.
SPOOL_MEMORY: Final = 1 << 20

if TYPE_CHECKING:

    class _ByteSink(Protocol):
        """Where a bundle or a diff is written: a binary stream, or anything with its write()."""

        def write(self, data: bytes, /) -> object: ...

    Scanned = tuple[int, int]  # (st_dev, st_ino) of a file or folder as the scan saw it
    # Where --pack found a file: the tree of a folder it was given, that folder's
    # identity, the parts of the file's folder below it, and the file's name.
    _Place = tuple[_Tree, Scanned, tuple[str, ...], str]
    _Source = tuple[str, str, Scanned, Optional[_Place]]  # name, path, identity, place


def _pack_name(path: str) -> str:
    """Return the bundle name for PATH as given: '/' between parts, no leading './', no trailing '/'."""
    name = path.replace(os.sep, "/") if os.sep != "/" else path
    while name.startswith("./"):
        name = name[2:].lstrip("/")
    name = name.rstrip("/") if name.strip("/") else name
    return "" if name == "." else name


class _BodyCheck:
    """Watches a body go by in chunks: NUL bytes, UTF-8, a line equal to its close marker, the final newline.

    What a bundle cannot carry is found without holding the body: the UTF-8
    check is incremental, and only an unfinished last line that could still
    be the close marker is carried from one chunk to the next.
    """

    def __init__(self, close: bytes) -> None:
        import codecs

        self.close = close
        self.nul = False
        self.utf8 = True
        self.holds_close = False
        self.size = 0
        self._last = b""  # the last byte seen
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        # The unfinished last line while it could still be the close marker
        # (with a CR); None while inside a line already too long to be one.
        self._carry: bytes | None = b""

    @property
    def refused(self) -> bool:
        """Is this body no text a bundle can hold (a NUL byte, not UTF-8)?"""
        return self.nul or not self.utf8

    @property
    def ends_with_newline(self) -> bool:
        """Does the body end with LF, or is it empty (what a bundle can express)?"""
        return self.size == 0 or self._last == b"\n"

    def feed(self, data: bytes) -> None:
        """Look at DATA, the next piece of the body."""
        if not data:
            return
        self.size += len(data)
        self._last = data[-1:]
        if b"\0" in data:
            self.nul = True
        if self.utf8:
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError:
                self.utf8 = False
        if not self.holds_close:
            self._look_for_close(data)

    def _look_for_close(self, data: bytes) -> None:
        close = self.close
        start = 0
        head = self._carry
        if head is None:  # the rest of a long line first: it cannot be the marker
            start = data.find(b"\n") + 1
            if not start:
                return
            head = b""
        cut = data.rfind(b"\n") + 1
        if cut > start:
            if head:  # the carried line ends in DATA
                first = data.find(b"\n", start) + 1
                self.holds_close = _marker_text(head + data[start:first]) == close
                start = first
            self.holds_close = self.holds_close or _holds_line(data, close, start, cut)
            tail = data[cut:]
        else:
            tail = head + data[start:]
        self._carry = tail if len(tail) <= len(close) + 1 else None  # + 1: the marker's CR

    def finish(self) -> None:
        """Settle the checks at the end of the body."""
        if self.utf8:
            try:
                self._decoder.decode(b"", True)
            except UnicodeDecodeError:
                self.utf8 = False
        if self._carry and _marker_text(self._carry) == self.close:  # a last line without LF
            self.holds_close = True


def _holds_line(buf: bytes, close: bytes, start: int, end: int) -> bool:
    """Tell whether BUF[START:END], whole lines, holds a line equal to the marker CLOSE (LF or CRLF after it)."""
    search = start
    while True:
        found = buf.find(close, search, end)
        if found < 0:
            return False
        search = found + 1
        if found > start and buf[found - 1] != 0x0A:
            continue
        after = found + len(close)
        if buf[after:after + 1] == b"\n" or buf[after:after + 2] == b"\r\n":
            return True


def _format_file(name: str, chunks: Iterable[bytes], out: _ByteSink, add_newline: bool) -> _BodyCheck:
    """Write the block of NAME with its body CHUNKS to OUT; return what the body check found.

    The caller decides what the check refuses. Reading stops at the first
    NUL byte or bad UTF-8: such a body is never bundled. With ADD_NEWLINE a
    body without a final newline gets one.
    """
    raw = name.encode("utf-8")
    close = CLOSE_PREFIX + raw + MARKER_SUFFIX
    check = _BodyCheck(close)
    out.write(OPEN_PREFIX + raw + MARKER_SUFFIX + b"\n")
    for chunk in chunks:
        check.feed(chunk)
        if check.refused:
            break
        out.write(chunk)
    check.finish()
    if add_newline and not check.ends_with_newline:
        out.write(b"\n")
    out.write(close + b"\n")
    return check


def format(files: Iterable[tuple[str, bytes]], *, portable: bool = False) -> bytes:
    """Return the bundle holding FILES, (name, body) pairs in order: the inverse of reading a bundle.

    Refused, all at once (one error, or an ErrorList of every problem): a
    name that breaks section 2 or collides with an earlier one
    (InvalidNameError; Windows rules apply on Windows and with PORTABLE),
    and a body a bundle cannot carry (BundleError): one holding a line equal
    to its own close marker, a non-empty one without a final newline, one
    with a NUL byte or not UTF-8; and an empty FILES, since reading refuses
    a bundle without a block. Anything but (str, bytes) pairs: UsageError.
    """
    import io

    windows = portable or os.name == "nt"
    index = NameIndex()
    out = io.BytesIO()
    errors: list[SplitError] = []
    count = 0
    for item in files:
        name, data = _format_item(item)
        count += 1
        why = "; ".join(check_name(name, windows)) or index.add(name)
        if why:
            errors.append(InvalidNameError(f"invalid name {quote(name)}: {why}", None, name))
            continue
        check = _format_file(name, (data,), out, add_newline=False)
        problems = _body_problems(check)
        if not check.ends_with_newline:
            problems.append("it does not end with a newline, which a bundle cannot express (add one)")
        if problems:
            errors.append(BundleError(f"cannot format {quote(name)}: {'; '.join(problems)}", None, name))
    if not count:  # reading would refuse it: a bundle holds at least one block
        errors.append(BundleError("no files to format: a bundle holds at least one block"))
    if errors:
        raise _combined(errors)
    return out.getvalue()


def _format_item(item: object) -> tuple[str, bytes]:
    """Return ITEM, one of format()'s (name, body) pairs, as a str and bytes; a UsageError if it is not one."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UsageError(f"format() takes (name, bytes) pairs, not a {type(item).__name__}")
    name: object = item[0]
    body: object = item[1]
    if not isinstance(name, str):
        raise UsageError(f"a name is a str, not a {type(name).__name__}")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise UsageError(f"the body of {quote(name)} is a {type(body).__name__}, not bytes: encode text first")
    return name, bytes(body)


def _body_problems(check: _BodyCheck) -> list[str]:
    """Return why a body that CHECK looked at cannot be put in a bundle as it is."""
    problems = []
    if check.nul:
        problems.append("it holds a NUL byte (binary files cannot be bundled)")
    elif not check.utf8:
        problems.append("it is not UTF-8 text")
    if check.holds_close:
        problems.append("it holds a line equal to its own close marker")
    return problems


def _identity(st: os.stat_result) -> Scanned:
    """Return what tells the file or folder ST describes from any other: (st_dev, st_ino)."""
    return st.st_dev, st.st_ino


def _pack_sources(
    paths: Sequence[str], warn: Callable[[str, str], None], trees: list[_Tree]
) -> list[_Source]:
    """Return (name, path, identity, place) for every file to bundle: PATHS in order, folders sorted by name bytes.

    PLACE is None for a file named in PATHS, else where the file was found:
    (the _Tree of the folder named in PATHS, that folder's identity, the
    parts of the file's folder below it, the file's own name). Each tree is
    added to TREES, for the caller to close.
    """
    found: list[_Source] = []
    for path in paths:
        name = _pack_name(path)
        path = path.rstrip("/" + os.sep) or path  # 'link/' would make lstat follow the link
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None
        if name.rsplit("/", 1)[-1].casefold() in VCS_FOLDERS:
            warn(path, f"skipped: a version-control {'folder' if stat.S_ISDIR(st.st_mode) else 'file'}")
        elif stat.S_ISDIR(st.st_mode):
            tree = _Tree(path, HAVE_DIR_FD)
            trees.append(tree)
            try:
                inside = _pack_folder(tree, name, _identity(st), warn)
            finally:
                tree.close()  # one tree's descriptors at a time, however many folders are named
            found += sorted(inside, key=lambda item: item[0].encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            found.append((name, path, _identity(st), None))
        else:
            warn(path, f"skipped: {_describe(st.st_mode)}, not a file")
    return found


def _pack_folder(tree: _Tree, name: str, identity: Scanned, warn: Callable[[str, str], None]) -> list[_Source]:
    """Return the files below TREE's folder (scanned as IDENTITY, bundled as NAME), walked without recursion.

    Any depth: each folder is opened relative to its parent, never through a
    symlink, so no path grows longer than one name.
    """
    found: list[_Source] = []
    pending: list[tuple[tuple[str, ...], str, Scanned]] = [((), name, identity)]
    while pending:
        parts, prefix, expected = pending.pop()
        path = os.path.join(tree.root, *parts)
        for leaf, st in _list_folder(tree, identity, parts, expected):
            child_path = os.path.join(path, leaf)
            child = f"{prefix}/{leaf}" if prefix else leaf
            if stat.S_ISLNK(st.st_mode):
                warn(child_path, "skipped: a symlink (links are not followed)")
            elif leaf.casefold() in VCS_FOLDERS:  # a folder, or a worktree's '.git' file
                warn(child_path, f"skipped: a version-control {'folder' if stat.S_ISDIR(st.st_mode) else 'file'}")
            elif stat.S_ISDIR(st.st_mode):
                pending.append((parts + (leaf,), child, _identity(st)))
            elif stat.S_ISREG(st.st_mode):
                found.append((child, child_path, _identity(st), (tree, identity, parts, leaf)))
            else:
                warn(child_path, "skipped: not a regular file")
    return found


def _changed(path: str) -> DiskError:
    """Return the error for PATH found to be no longer what the scan saw."""
    return DiskError(f"cannot read {quote(path)}: it changed while the tree was being packed; run --pack again")


def _scanned_folder(tree: _Tree, top: Scanned, parts: tuple[str, ...], expected: Scanned | None = None) -> Handle:
    """Return a handle on TREE's folder PARTS, which must still be the folder scanned (EXPECTED, if given).

    The folder named for --pack (scanned as TOP) is opened without following
    a link; each folder below it relative to its parent, with O_NOFOLLOW
    where dir_fd exists, and one reopened must be the folder first seen.
    """
    path = os.path.join(tree.root, *parts)
    try:
        handle = tree.folder(parts, False)
        if handle is None:  # DIR is not open (a tree is closed between uses), or a folder is gone
            if tree.is_open():
                raise _changed(path)
            if _identity(tree.open_root(follow=False)) != top:
                raise _changed(tree.root)
            handle = tree.folder(parts, False)
            if handle is None:
                raise _changed(path)
        if expected is not None:
            st = os.fstat(handle) if isinstance(handle, int) else os.lstat(handle)
            if _identity(st) != expected:
                raise _changed(path)
        return handle
    except TargetError:  # a part is a link or a file now, or another folder
        raise _changed(path) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):  # a link, a file, or nothing now
            raise _changed(path) from None
        raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None


def _list_folder(
    tree: _Tree, top: Scanned, parts: tuple[str, ...], expected: Scanned
) -> list[tuple[str, os.stat_result]]:
    """Return (name, lstat) of each entry of TREE's folder PARTS, which must still be the one scanned.

    Where scandir takes a descriptor, the folder is listed through the
    descriptor opened without following a link, so a folder swapped for a
    link after the scan is never listed.
    """
    handle = _scanned_folder(tree, top, parts, expected)
    try:
        if isinstance(handle, int) and os.scandir in os.supports_fd:
            with os.scandir(handle) as entries:
                return [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
        path = handle if isinstance(handle, str) else os.path.join(tree.root, *parts)
        with os.scandir(path) as entries:  # Windows: DirEntry.stat gives no st_ino there
            return [(entry.name, os.lstat(entry.path)) for entry in entries]
    except OSError as exc:
        raise DiskError(f"cannot read {quote(os.path.join(tree.root, *parts))}: {_reason(exc)}") from None


def _open_scanned(path: str, expected: Scanned, place: _Place | None) -> int:
    """Open the file PATH, found at PLACE, for reading; it must still be the regular file scanned.

    Opened relative to its folder (see _scanned_folder), or by PATH when it
    was named itself. O_NOFOLLOW: a file swapped for a link is not read
    through; O_NONBLOCK: a FIFO swapped in does not hang the open. A file
    that is no longer the one scanned is an error, not a skip: the tree is
    changing under the pack, and a bundle silently missing a file that
    exists would be worse than a rerun.
    """
    flags = os.O_RDONLY | O_NONBLOCK
    try:
        if place is None:
            fd = os.open(path, flags | O_NOFOLLOW | O_BINARY | O_CLOEXEC)
        else:
            tree, top, parts, leaf = place
            fd = tree.open(_scanned_folder(tree, top, parts), leaf, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, getattr(errno, "EMLINK", -1)):
            raise _changed(path) from None
        raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or _identity(st) != expected:
            raise _changed(path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_fd(fd: int, path: str) -> Iterator[bytes]:
    """Yield the contents of the open file FD (known as PATH) in chunks: the size it has now, no more, no less.

    A file that grows or shrinks while it is read is changing under the
    pack: an error, as for a file swapped after the scan (and a file that
    never stops growing is not read forever).
    """
    left = os.fstat(fd).st_size
    while True:
        try:
            data = os.read(fd, min(CHUNK_SIZE, left) if left else 1)
        except OSError as exc:
            raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None
        if not data and not left:
            return
        if not data or not left:  # shorter, or longer, than it was
            raise _changed(path)
        left -= len(data)
        yield data


def pack(
    paths: Iterable[str | os.PathLike[str]],
    out: _ByteSink,
    *,
    portable: bool = False,
    on_warning: Callable[[SplitWarning], None] | None = None,
) -> list[str]:
    """Write a bundle of the files at PATHS to OUT; return the names bundled, in order.

    Folders are walked (sorted by the whole name's UTF-8 bytes), PATHS kept
    in the order given. Symlinks, version-control folders, files holding a
    NUL byte or not UTF-8 are skipped, and a missing final newline is added,
    each with a SplitWarning to ON_WARNING. A name that breaks the
    name rules, a file holding its own close marker, or a file that changed
    since the scan raises (one error, or an ErrorList), and then nothing is
    written to OUT: the bundle is staged in a spool that spills to disk.
    """
    import io

    def warn(path: str, message: str) -> None:
        if on_warning is not None:
            on_warning(SplitWarning(f"{quote(path)}: {message}"))

    windows = portable or os.name == "nt"
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise UsageError("pack() takes a list of paths; for one path, pass [path]")
    if isinstance(out, io.TextIOBase) or not callable(getattr(out, "write", None)):
        raise UsageError("pack() writes bytes: OUT must be a binary stream, such as open(path, 'wb')")
    trees: list[_Tree] = []
    try:
        return _pack_into(paths, out, windows, warn, trees)
    finally:
        for tree in trees:
            tree.close()


def _pack_into(
    paths: Iterable[str | os.PathLike[str]],
    out: _ByteSink,
    windows: bool,
    warn: Callable[[str, str], None],
    trees: list[_Tree],
) -> list[str]:
    """Do pack()'s work; the folder trees it opens go to TREES, for pack() to close."""
    import tempfile

    sources = _pack_sources([_path_arg(path, "a path to pack") for path in paths], warn, trees)
    errors: list[SplitError] = []
    index = NameIndex()
    for name, path, _, _ in sources:
        why = "; ".join(check_name(name, windows)) or index.add(name)
        if why:
            errors.append(InvalidNameError(f"cannot bundle {quote(path)} as {quote(name)}: {why}", None, name))
    if errors:
        raise _combined(errors)
    names: list[str] = []
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as staged:
        current: _Tree | None = None
        for name, path, identity, place in sources:
            start = staged.tell()
            if place is not None and place[0] is not current:  # one tree's descriptors open at a time
                if current is not None:
                    current.close()
                current = place[0]
            fd = _open_scanned(path, identity, place)
            try:
                check = _format_file(name, _read_fd(fd, path), staged, add_newline=True)
            finally:
                os.close(fd)
            if check.refused:
                warn(path, "skipped: " + _body_problems(check)[0])
            elif not check.ends_with_newline:
                warn(path, "has no final newline; the bundle adds one")
            if check.holds_close and not check.refused:
                errors.append(
                    BundleError(f"cannot bundle {quote(path)}: it holds a line equal to its own close marker", None, name)
                )
            if check.refused or check.holds_close:
                staged.seek(start)
                staged.truncate(start)
                continue
            names.append(name)
        if not names and not errors:  # splitting refuses a bundle without a block: say so now
            errors.append(BundleError("nothing to bundle: no file under the paths given could be bundled"))
        if errors:
            raise _combined(errors)
        staged.seek(0)
        while True:
            data = staged.read(CHUNK_SIZE)
            if not data:
                break
            out.write(data)
    return names


# ---------------------------------------------------------------------------
# Diff: what a bundle would change, as a unified diff that patch applies
# ---------------------------------------------------------------------------


# --diff keeps (hash, offset) for each line, never the lines: memory stays
# bounded by these limits, and past them a file is one whole-file hunk.
DIFF_MAX_LINES: Final = 1 << 17  # lines of one side
DIFF_MAX_LINE: Final = 1 << 20  # bytes of one line
DIFF_WORK: Final = 16  # line visits per line of the two sides the alignment may make
DIFF_GAP_CELLS: Final = 1 << 12  # line pairs difflib may weigh in a region without unique lines (its cost grows faster)
DIFF_MAX_EDITS: Final = 500  # edits Myers' search may look for in a larger one (its trace grows as the square)
DIFF_CONTEXT: Final = 3  # lines around each change, as diff -u

if TYPE_CHECKING:
    from array import array

    Span = tuple[IO[bytes], int, int]  # (stream, start, size): one side's bytes
    Opcode = tuple[str, int, int, int, int]  # as difflib's: tag, old lines i1:i2, new lines j1:j2


def _read_span(stream: IO[bytes], start: int, size: int) -> Iterator[bytes]:
    """Yield SIZE bytes of STREAM from START in chunks (seeking each time: other readers share it)."""
    end = start + size
    while start < end:
        stream.seek(start)
        data = stream.read(min(CHUNK_SIZE, end - start))
        if not data:
            raise OSError(errno.EIO, "a staged copy was cut short")
        start += len(data)
        yield data


class _DiffSide:
    """One side of a diff, after one pass: its line count and, within the limits, each line's hash and offset."""

    def __init__(self, span: Span) -> None:
        import codecs
        from array import array
        from itertools import accumulate, islice

        self.span = span
        self.lines = 0
        self.binary = False
        ids: array[int] | None = array("q")
        offsets: array[int] | None = array("q", [0])  # where each line starts; then the end
        decoder = codecs.getincrementaldecoder("utf-8")()
        carry = b""
        last = b""
        for chunk in _read_span(*span):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                self.binary = True
                break
            last = chunk[-1:]
            if ids is None or offsets is None:
                self.lines += chunk.count(b"\n")
                continue
            parts = (carry + chunk if carry else chunk).split(b"\n")
            carry = parts.pop()
            self.lines += len(parts)
            ids.extend(map(hash, parts))
            offsets.extend(islice(accumulate([len(part) + 1 for part in parts], initial=offsets[-1]), 1, None))
            if self.lines > DIFF_MAX_LINES or len(carry) > DIFF_MAX_LINE:
                ids = offsets = None
                carry = b""
        if not self.binary:
            try:
                decoder.decode(b"", True)
            except UnicodeDecodeError:
                self.binary = True
        if last and last != b"\n":  # a last line without LF: not equal to the same text with one
            self.lines += 1
            if ids is not None and offsets is not None:
                ids.append(hash((carry,)))
                offsets.append(span[2])
        self.ids = ids
        self.offsets = offsets

    def byte_range(self, first: int, last: int) -> tuple[int, int]:
        """Return where lines FIRST to LAST (exclusive) start and end."""
        if self.offsets is None:  # only the whole side is ever asked for
            return 0, self.span[2]
        return self.offsets[first], self.offsets[last]


def _diff(name: str, new_file: bool, old: Span, new: Span, out: _ByteSink, visible: bool = False) -> None:
    """Write to OUT a unified diff from OLD to NEW for NAME (a new file's OLD is /dev/null).

    Output is what `git diff`, `patch -p1` and `git apply` agree on, lines split at LF only.
    The common start and end are trimmed by reading both sides in step; the
    lines between are compared by hash (each run found equal is then checked
    byte for byte) and aligned by unique lines first (patience), then by
    difflib on small regions and Myers' search on large ones, all within a
    work budget, so the cost stays near n log n. Past the limits the changed
    part is one hunk, said in a note line (`splitfile: note: ...`, a line
    that patch and git apply skip). VISIBLE (a terminal): control characters
    are shown escaped, so a lone CR cannot hide what comes before it on a
    line, and a note after the hunks says so. Nothing is held whole: both
    sides are read from their streams in chunks.
    """
    before = "/dev/null" if new_file else f"a/{name}"
    head, head_lines, tail, text = _common_ends(old, new)
    a = _DiffSide((old[0], old[1] + head, old[2] - head - tail))
    b = _DiffSide((new[0], new[1] + head, new[2] - head - tail))
    if not text or a.binary or b.binary:
        out.write(f"Binary files {before} and b/{name} differ\n".encode("utf-8", "surrogateescape"))
        return
    notes: list[str] = []
    runs: Sequence[int] = ()
    aligned = None
    if not a.lines or not b.lines:  # all new or all gone: one hunk is the whole truth
        aligned = runs, False
    elif a.ids is not None and b.ids is not None:
        aligned = _align(a.ids, b.ids)
    if aligned is not None and not _runs_equal(a, b, aligned[0]):  # a hash collision: trust no run
        aligned = None
    if aligned is None:
        notes.append(f"the changes to {quote(name)} are shown as one hunk: too large or too costly to compare"
                     f" line by line ({a.lines} and {b.lines} lines between the first and the last change)")
    else:
        runs, coarse = aligned
        if coarse:
            notes.append(f"some changed regions of {quote(name)} are shown whole: too costly to align line by line")
    buffered = _Buffered(out)
    for note in notes:
        buffered.write(f"splitfile: note: {note}\n".encode("utf-8", "surrogateescape"))
    # A git header, as `git diff` writes it, so that patch and git apply both
    # create a new empty file (it has no hunk to carry it); and a tab after a
    # name with a blank, since patch reads a name up to a tab (where diff -u
    # puts the date), else up to a blank.
    created = "new file mode 100644\n" if new_file else ""
    buffered.write(f"diff --git a/{name} b/{name}\n{created}".encode("utf-8", "surrogateescape"))
    end = "\t" if any(ch.isspace() for ch in name) else ""
    before_end = "" if new_file else end
    buffered.write(f"--- {before}{before_end}\n+++ b/{name}{end}\n".encode("utf-8", "surrogateescape"))
    escape = _escaper() if visible else None
    shown = False
    for group in _groups(_opcodes(runs, a.lines, b.lines), DIFF_CONTEXT):
        first, last = group[0], group[-1]
        old_range = _hunk_range(head_lines + first[1], head_lines + last[2])
        new_range = _hunk_range(head_lines + first[3], head_lines + last[4])
        buffered.write(f"@@ -{old_range} +{new_range} @@\n".encode())
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                shown |= _emit_lines(buffered, b" ", a, i1, i2, escape)
                continue
            if tag in ("replace", "delete"):
                shown |= _emit_lines(buffered, b"-", a, i1, i2, escape)
            if tag in ("replace", "insert"):
                shown |= _emit_lines(buffered, b"+", b, j1, j2, escape)
    if shown:
        buffered.write(f"splitfile: note: {quote(name)} holds control or invisible characters, shown above as"
                       " escapes such as \\r, \\x1b and \\u202e; piped output keeps them as they are\n"
                       .encode("utf-8", "surrogateescape"))
    buffered.flush()


def _common_ends(old: Span, new: Span) -> tuple[int, int, int, bool]:
    """Return (head, head_lines, tail, text): the bytes of the whole lines both sides start with and how many
    lines they are, the bytes of the whole lines both end with, and whether the common bytes are UTF-8.

    Both keep DIFF_CONTEXT lines out, for the hunks' context. Found by
    reading both sides in step from each end, so a large file with a change
    in one place is compared only around it; the tail never reaches into
    the head.
    """
    import codecs
    from collections import deque

    (a, a_start, a_size), (b, b_start, b_size) = old, new
    limit = min(a_size, b_size)
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = True
    newlines = 0
    last: deque[int] = deque(maxlen=DIFF_CONTEXT + 1)  # where the last newlines of the common start are
    pos = 0
    while pos < limit:
        size = min(CHUNK_SIZE, limit - pos)
        x, y = _read_at(a, a_start + pos, size), _read_at(b, b_start + pos, size)
        same = size if x == y else _common_length(x, y, False)
        piece = x if same == size else x[:same]
        if text:
            try:
                decoder.decode(piece)
            except UnicodeDecodeError:
                text = False
        newlines += piece.count(b"\n")
        found: list[int] = []
        at = len(piece)
        while len(found) <= DIFF_CONTEXT:
            at = piece.rfind(b"\n", 0, at)
            if at < 0:
                break
            found.append(pos + at)
        last.extend(reversed(found))
        pos += same
        if same < size:
            break
    head = head_lines = 0
    if newlines > DIFF_CONTEXT:
        head, head_lines = last[0] + 1, newlines - DIFF_CONTEXT
    room = limit - (last[-1] + 1 if last else 0)  # the tail may not take a line of the head
    near: list[int] = []  # the newlines of the common end nearest its start, as distances from the end
    back = 0
    while back < room:
        size = min(CHUNK_SIZE, room - back)
        x = _read_at(a, a_start + a_size - back - size, size)
        y = _read_at(b, b_start + b_size - back - size, size)
        same = size if x == y else _common_length(x, y, True)
        piece = x if same == size else x[size - same:]
        found = []
        at = -1
        while len(found) <= DIFF_CONTEXT:
            at = piece.find(b"\n", at + 1)
            if at < 0:
                break
            found.append(back + same - at)
        near = (found + near)[:DIFF_CONTEXT + 1]
        back += same
        if same < size:
            break
    tail = near[DIFF_CONTEXT] - 1 if len(near) > DIFF_CONTEXT else 0
    if text and tail:
        try:
            decoder = codecs.getincrementaldecoder("utf-8")()
            for chunk in _read_span(a, a_start + a_size - tail, tail):
                decoder.decode(chunk)
            decoder.decode(b"", True)
        except UnicodeDecodeError:
            text = False
    return head, head_lines, tail, text


def _read_at(stream: IO[bytes], start: int, size: int) -> bytes:
    """Return SIZE bytes of STREAM from START."""
    return b"".join(_read_span(stream, start, size))


def _common_length(x: bytes, y: bytes, from_end: bool) -> int:
    """Return how many bytes X and Y (of one length) have in common at their start, or at their end."""
    low, high = 0, len(x)
    while low < high:  # bisect: slices are compared in C
        mid = (low + high + 1) // 2
        if (x[len(x) - mid:] == y[len(y) - mid:]) if from_end else (x[:mid] == y[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


def _runs_equal(a: _DiffSide, b: _DiffSide, runs: Sequence[int]) -> bool:
    """Tell whether every run of lines that the hashes call equal is equal byte for byte.

    Lines were compared by hash; a diff that shows a changed line as
    unchanged context must not be possible, even with a chosen hash seed.
    """
    for k in range(0, len(runs), 3):
        i, j, size = runs[k], runs[k + 1], runs[k + 2]
        old_begin, old_end = a.byte_range(i, i + size)
        new_begin, new_end = b.byte_range(j, j + size)
        if old_end - old_begin != new_end - new_begin:
            return False
        old_chunks = _read_span(a.span[0], a.span[1] + old_begin, old_end - old_begin)
        new_chunks = _read_span(b.span[0], b.span[1] + new_begin, new_end - new_begin)
        if any(x != y for x, y in zip(old_chunks, new_chunks)):  # same sizes asked for: same chunk edges
            return False
    return True


class _Buffered:
    """Gathers small writes into chunks for OUT."""

    def __init__(self, out: _ByteSink) -> None:
        self.out = out
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        """Take DATA; pass the gathered writes on once they fill a chunk."""
        self.parts.append(data)
        self.size += len(data)
        if self.size >= CHUNK_SIZE:
            self.flush()

    def flush(self) -> None:
        """Pass every gathered write on to OUT."""
        if self.parts:
            self.out.write(b"".join(self.parts))
            self.parts = []
            self.size = 0


def _escaper() -> Callable[[bytes], tuple[bytes, int]]:
    """Return a function that makes control characters in text visible; it returns the text and how many.

    Escaped: C0 controls but TAB and LF, a CR not followed by LF, DEL, C1
    controls (U+0080 to U+009F, two bytes in UTF-8), and the invisible
    characters that reorder or hide text ("Trojan Source"): the bidi marks,
    embeddings, overrides and isolates, zero-width characters, the line and
    paragraph separators, and U+FEFF, each as \\uXXXX.
    """
    import re

    pattern = re.compile(
        rb"\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]"
        rb"|\xd8\x9c|\xe2\x80[\x8b-\x8f\xa8-\xae]|\xe2\x81[\xa0-\xa4\xa6-\xa9]|\xef\xbb\xbf"
    )

    def shown(match: re.Match[bytes]) -> bytes:
        text = match.group()
        if text == b"\r":
            return b"\\r"
        if len(text) == 1 or text[0] == 0xC2:
            return b"\\x%02x" % text[-1]
        return b"\\u%04x" % ord(text.decode("utf-8"))

    def escape(data: bytes) -> tuple[bytes, int]:
        return pattern.subn(shown, data)

    return escape


def _emit_lines(
    out: _Buffered, prefix: bytes, side: _DiffSide, first: int, last: int,
    escape: Callable[[bytes], tuple[bytes, int]] | None,
) -> bool:
    """Write lines FIRST to LAST of SIDE to OUT, each after PREFIX, streamed; return whether any was escaped."""
    begin, end = side.byte_range(first, last)
    stream, start, _ = side.span
    at_line_start = True
    escaped = 0
    held = b""  # with ESCAPE: a last byte that the next chunk decides about (CR, a C1 lead byte)
    for data in _read_span(stream, start + begin, end - begin):
        if escape is not None:
            data = held + data
            held = b""
            if data[-1:] in (b"\r", b"\xc2"):
                held, data = data[-1:], data[:-1]
            data, count = escape(data)
            escaped += count
        at_line_start = _put_lines(out, prefix, data, at_line_start)
    if held and escape is not None:
        data, count = escape(held)
        escaped += count
        at_line_start = _put_lines(out, prefix, data, at_line_start)
    if not at_line_start:
        out.write(b"\n\\ No newline at end of file\n")
    return escaped > 0


def _put_lines(out: _Buffered, prefix: bytes, data: bytes, at_line_start: bool) -> bool:
    """Write DATA to OUT with PREFIX at each line start; return whether it ends a line."""
    if not data:
        return at_line_start
    if at_line_start:
        out.write(prefix)
    out.write(data[:-1].replace(b"\n", b"\n" + prefix) + data[-1:])
    return data.endswith(b"\n")


def _align(a: Sequence[int], b: Sequence[int]) -> tuple[array[int], bool] | None:
    """Return the runs of equal lines between the line ids A and B, in order, as flat (i, j, size)
    triples, and whether some region was left unaligned (shown whole); None past the work budget.

    Common ends are trimmed; lines unique on both sides anchor the rest (the
    longest increasing run of them, found with bisect: patience diff); the
    regions between anchors are done the same way, and one without unique
    lines goes to difflib when small. Each step is linear in its region and
    the total is capped, so the cost stays near n log n. Work items and runs
    are kept in flat arrays of numbers: a few dozen bytes a line.
    """
    import difflib
    from array import array

    budget = DIFF_WORK * (len(a) + len(b)) + (1 << 16)
    runs = array("q")
    coarse = False
    # Work items, four numbers each: a region (a0, a1, b0, b1), or, with a1 = -1,
    # a run (i, -1, j, size) to add once the regions before it are done.
    todo = array("q", [0, len(a), 0, len(b)])
    while todo:
        b1, b0, a1, a0 = todo.pop(), todo.pop(), todo.pop(), todo.pop()
        if a1 < 0:
            _add_run(runs, a0, b0, b1)
            continue
        size = 0
        while a0 + size < a1 and b0 + size < b1 and a[a0 + size] == b[b0 + size]:
            size += 1
        _add_run(runs, a0, b0, size)
        a0, b0 = a0 + size, b0 + size
        size = 0
        while a1 - size > a0 and b1 - size > b0 and a[a1 - size - 1] == b[b1 - size - 1]:
            size += 1
        if size:
            a1, b1 = a1 - size, b1 - size
            todo.extend((a1, -1, b1, size))
        if a0 == a1 or b0 == b1:
            continue
        budget -= (a1 - a0) + (b1 - b0)
        if budget < 0:
            return None
        anchor_a, anchor_b, common = _unique_pairs(a, a0, a1, b, b0, b1)
        if anchor_a:
            # Pushed last to first, so that they are done in order.
            end_a, end_b = a1, b1
            for k in range(len(anchor_a) - 1, -1, -1):
                i, j = anchor_a[k], anchor_b[k]
                if i + 1 < end_a and j + 1 < end_b:
                    todo.extend((i + 1, end_a, j + 1, end_b))
                todo.extend((i, -1, j, 1))
                end_a, end_b = i, j
            if a0 < end_a and b0 < end_b:
                todo.extend((a0, end_a, b0, end_b))
        elif common and (a1 - a0) * (b1 - b0) <= DIFF_GAP_CELLS:
            budget -= (a1 - a0) * (b1 - b0)
            matcher = difflib.SequenceMatcher(None, a[a0:a1], b[b0:b1], autojunk=False)
            for i, j, n in matcher.get_matching_blocks():
                _add_run(runs, a0 + i, b0 + j, n)
        elif common:
            # Few edits in a large region (lines moved among repeated ones):
            # Myers' O((N+M)D) search, for as many edits as the budget pays for.
            limit = min(DIFF_MAX_EDITS, budget // ((a1 - a0) + (b1 - b0)))
            found = _myers(a, a0, a1, b, b0, b1, limit)
            if found is None:
                coarse = True
            else:
                budget -= ((a1 - a0) + (b1 - b0)) * (len(found) // 3 + 1)
                for k in range(0, len(found), 3):
                    _add_run(runs, found[k], found[k + 1], found[k + 2])
    return runs, coarse


def _myers(a: Sequence[int], a0: int, a1: int, b: Sequence[int], b0: int, b1: int, limit: int) -> array[int] | None:
    """Return the runs of equal lines (flat (i, j, size) triples, in order) of a shortest edit script
    from A[A0:A1] to B[B0:B1] of at most LIMIT edits (Myers 1986); None if it takes more."""
    from array import array

    n, m = a1 - a0, b1 - b0
    middle = limit + 1
    far = array("q", [0]) * (2 * limit + 3)  # the furthest x reached on each diagonal k = x - y, at MIDDLE + k
    trace: list[array[int]] = []  # FAR over diagonals -d-1 .. d+1 before each round d
    for d in range(limit + 1):
        trace.append(far[middle - d - 1:middle + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and far[middle + k - 1] < far[middle + k + 1]):
                x = far[middle + k + 1]  # a line of B inserted
            else:
                x = far[middle + k - 1] + 1  # a line of A deleted
            y = x - k
            while x < n and y < m and a[a0 + x] == b[b0 + y]:
                x += 1
                y += 1
            far[middle + k] = x
            if x >= n and y >= m:
                return _myers_runs(trace, d, n, m, a0, b0)
    return None


def _myers_runs(trace: list[array[int]], rounds: int, n: int, m: int, a0: int, b0: int) -> array[int]:
    """Return the equal runs of the path that Myers' search found in ROUNDS rounds, walking back from (N, M)."""
    from array import array

    found: list[tuple[int, int, int]] = []
    x, y = n, m
    for d in range(rounds, 0, -1):
        before = trace[d]  # index k + d + 1 holds diagonal k
        k = x - y
        down = k == -d or (k != d and before[k - 1 + d + 1] < before[k + 1 + d + 1])
        previous = k + 1 if down else k - 1
        start_x = before[previous + d + 1]
        start_y = start_x - previous
        mid_x, mid_y = (start_x, start_y + 1) if down else (start_x + 1, start_y)
        if x > mid_x:
            found.append((a0 + mid_x, b0 + mid_y, x - mid_x))
        x, y = start_x, start_y
    if x > 0:
        found.append((a0, b0, x))
    runs = array("q")
    for run in reversed(found):
        runs.extend(run)
    return runs


def _add_run(runs: array[int], i: int, j: int, size: int) -> None:
    """Append the run of SIZE equal lines at I and J to RUNS, joining it to the last run if they touch."""
    if not size:
        return
    if runs and runs[-3] + runs[-1] == i and runs[-2] + runs[-1] == j:
        runs[-1] += size
    else:
        runs.extend((i, j, size))


def _unique_pairs(
    a: Sequence[int], a0: int, a1: int, b: Sequence[int], b0: int, b1: int
) -> tuple[array[int], array[int], bool]:
    """Return the longest increasing run of line pairs unique in both regions (as the arrays of their i
    and of their j), and whether the regions have any line in common."""
    from array import array
    from bisect import bisect_left

    # One dict: a line id's index in A (unique so far), -1 (not usable), or,
    # once seen in B, -2 - (i << 32 | j).
    where: dict[int, int] = {}
    for i in range(a0, a1):
        key = a[i]
        where[key] = -1 if key in where else i
    common = False
    for j in range(b0, b1):
        key = b[j]
        state = where.get(key)
        if state is None:
            continue
        common = True
        if state >= 0:
            where[key] = -2 - (state << 32 | j)
        elif state < -1:
            where[key] = -1  # twice in B
    found_a, found_b = array("q"), array("q")  # in order of j
    for j in range(b0, b1):
        state = where.get(b[j], -1)
        if state < -1 and (-2 - state) & 0xFFFFFFFF == j:
            found_a.append((-2 - state) >> 32)
            found_b.append(j)
    del where
    tails = array("q")  # the smallest last i of an increasing run of each length
    ends = array("q")  # where in FOUND that run ends
    before = array("q", [-1]) * len(found_a)
    for k, i in enumerate(found_a):
        at = bisect_left(tails, i)
        if at == len(tails):
            tails.append(i)
            ends.append(k)
        else:
            tails[at] = i
            ends[at] = k
        before[k] = ends[at - 1] if at else -1
    chain_a, chain_b = array("q"), array("q")
    k = ends[-1] if ends else -1
    while k >= 0:
        chain_a.append(found_a[k])
        chain_b.append(found_b[k])
        k = before[k]
    chain_a.reverse()
    chain_b.reverse()
    return chain_a, chain_b, common


def _opcodes(runs: Sequence[int], old_lines: int, new_lines: int) -> Iterator[Opcode]:
    """Yield difflib-style opcodes from the equal RUNS (flat, ordered, joined (i, j, size) triples)."""
    i = j = 0
    for k in range(0, len(runs) + 3, 3):
        ai, bj, size = (runs[k], runs[k + 1], runs[k + 2]) if k < len(runs) else (old_lines, new_lines, 0)
        tag = "replace" if i < ai and j < bj else "delete" if i < ai else "insert" if j < bj else ""
        if tag:
            yield tag, i, ai, j, bj
        if size:
            yield "equal", ai, ai + size, bj, bj + size
        i, j = ai + size, bj + size


def _groups(codes: Iterable[Opcode], context: int) -> Iterator[list[Opcode]]:
    """Yield the hunks of CODES with CONTEXT lines around each change (difflib's get_grouped_opcodes)."""
    group: list[Opcode] = []
    first = True
    for tag, i1, i2, j1, j2 in codes:
        if first and tag == "equal":  # the leading stretch keeps only its last lines
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        first = False
        if tag == "equal" and i2 - i1 > 2 * context:  # a long unchanged stretch ends a hunk
            if group:
                group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
                yield group
                group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and group[-1][0] == "equal":  # the trailing stretch keeps only its first lines
        tag, i1, i2, j1, j2 = group.pop()
        group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _hunk_range(start: int, stop: int) -> str:
    """Return lines START to STOP as a unified diff's hunk header gives them (difflib's rule)."""
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    return f"{start + 1 if length else start},{length}"


# ---------------------------------------------------------------------------
# Python API: the command line's jobs as functions
# ---------------------------------------------------------------------------
#
# A bundle is given as bytes (its contents), str (its text, encoded as UTF-8),
# os.PathLike (a path: pathlib.Path("bundle.txt")) or a binary stream. A plain
# str is always text, never a path: a model's answer is a str, and a one-line
# answer must not be taken for the name of a file that happens to exist.


class FileResult:
    """What extract() did, or would do, with one block: its name, its status and the line of its FILE marker."""

    __slots__ = ("name", "status", "line")

    def __init__(self, name: str, status: str, line: int) -> None:
        self.name = name
        self.status = status  # "new", "same" or "changed"
        self.line = line

    def __repr__(self) -> str:
        return f"FileResult({self.name!r}, {self.status!r}, line={self.line})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileResult):
            return NotImplemented
        return (self.name, self.status, self.line) == (other.name, other.status, other.line)


class FileDiff:
    """What diff() found for one block that would create or change a file: a unified diff that `patch -p1` applies."""

    __slots__ = ("name", "status", "line", "text")

    def __init__(self, name: str, status: str, line: int, text: bytes) -> None:
        self.name = name
        self.status = status  # "new" or "changed"
        self.line = line
        self.text = text

    def __repr__(self) -> str:
        return f"FileDiff({self.name!r}, {self.status!r}, line={self.line}, text=<{len(self.text)} bytes>)"


class SplitWarning:
    """Something worth telling that does not stop the run, such as a line that almost looks like a marker."""

    __slots__ = ("message", "line")

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line  # the bundle line it is about, if any

    def __repr__(self) -> str:
        return f"SplitWarning({self.message!r}, line={self.line})"

    def render(self, source: str) -> str:
        """Return `SOURCE:LINE: message`, as the command line prints it."""
        return SplitError(self.message, self.line).render(source)


class _Sink:
    """Where a run's warnings go: to a callback in the API (never to the terminal); see _Reporter for the CLI."""

    def __init__(self, on_warning: Callable[[SplitWarning], None] | None = None) -> None:
        self._on_warning = on_warning
        self.staged = 0  # blocks read so far, for a progress report

    def warning(self, message: str, line: int | None = None) -> None:
        """Pass on a warning."""
        if self._on_warning is not None:
            self._on_warning(SplitWarning(message, line))

    def problem(self, message: str) -> None:
        """Pass on what a rollback could not undo (the run has failed already)."""
        self.warning(message)

    def advance(self, size: int) -> None:
        """Count SIZE more bytes of the bundle read (only the command line shows it)."""


class _Input:
    """A bundle opened for reading: its name in messages, its chunks, and how to read it again if it can be."""

    def __init__(
        self,
        source: str,
        chunks: Iterable[Buffer],
        reread: Reread | None = None,
        size: int | None = None,
        owned: IO[bytes] | None = None,
    ) -> None:
        self.source = source
        self.chunks = chunks
        self.reread = reread  # None: line numbers are counted as the bytes pass
        self.size = size  # known for a file, for the progress report
        self._owned = owned  # a file this input opened, and closes

    def events(self) -> Iterator[Event]:
        """Return the parser's events for the bundle."""
        return parse(self.chunks, self.reread)

    def close(self) -> None:
        """Close the file this input opened, if any."""
        if self._owned is not None:
            self._owned.close()


if TYPE_CHECKING:
    import io

    Bundle = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", "io.RawIOBase", "io.BufferedIOBase", IO[bytes]]


def _open_input(bundle: Bundle, sink: _Sink) -> _Input:
    """Return BUNDLE, as the API takes it, opened for reading."""
    import io

    if isinstance(bundle, str):
        try:
            data: Buffer = bundle.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise UsageError(f"the bundle text holds a character UTF-8 cannot encode ({exc.reason})") from None
        return _memory_input(data, "<text>")
    if isinstance(bundle, (bytes, bytearray, memoryview)):
        return _memory_input(bytes(bundle) if isinstance(bundle, memoryview) else bundle, "<bytes>")
    if isinstance(bundle, os.PathLike):
        return _file_input(_path_arg(bundle, "a bundle path"), sink)
    if isinstance(bundle, io.TextIOBase):
        raise UsageError("a bundle stream must be binary: open the file with 'rb', or pass the text itself as a str")
    if callable(getattr(bundle, "read", None)):
        return _Input("<stream>", _read_chunks(bundle, sink.advance))  # type: ignore[arg-type]
    raise UsageError(
        f"a bundle is bytes, a str (its text), a path (os.PathLike) or a binary stream, not {type(bundle).__name__}"
    )


def _memory_input(data: Buffer, source: str) -> _Input:
    """Return a bundle held in memory: read in chunks, as a file is (the events of one chunk are held at once),
    and read again by slicing."""

    def reread(start: int, end: int) -> Iterator[bytes]:
        for at in range(start, min(end, len(data)), CHUNK_SIZE):
            yield bytes(data[at:min(at + CHUNK_SIZE, end)])

    return _Input(source, reread(0, len(data)), reread, len(data))


def _file_input(path: str, sink: _Sink) -> _Input:
    """Return the bundle file at PATH opened; a regular file can be read again for line numbers."""
    try:
        stream = open(path, "rb", buffering=0)
    except OSError as exc:
        raise DiskError(f"cannot read the bundle: {_reason(exc)}") from None
    try:
        st = os.fstat(stream.fileno())
    except OSError:
        return _Input(path, _read_chunks(stream, sink.advance), owned=stream)
    except BaseException:
        stream.close()
        raise
    regular = stat.S_ISREG(st.st_mode)
    chunks = _read_chunks(stream, sink.advance)
    # A bundle file can be read again, so lines need counting only for messages.
    return _Input(
        path,
        _whole(chunks, st.st_size) if regular else chunks,
        _rereader(path) if regular else None,
        st.st_size if regular else None,
        stream,
    )


def _whole(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Yield CHUNKS of a bundle file that held SIZE bytes when opened; fail if it ends before that.

    A file cut short while it is read (rewritten by another program) would
    otherwise look like a shorter bundle, and its last files be lost.
    """
    read = 0
    for chunk in chunks:
        read += len(chunk)
        yield chunk
    if read < size:
        raise DiskError(f"the bundle file shrank while it was read ({read} of {size} bytes); nothing was written")


def _read_chunks(stream: IO[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    """Yield the bundle in chunks as they arrive (a pipe is not waited on to fill).

    A stream left non-blocking by its parent (asyncio and node leave stdin so)
    answers "nothing yet" the way it answers "the end": an empty read counts
    as the end only when the stream is blocking, or was just seen readable.
    """
    _widen_pipe(stream)
    read = getattr(stream, "read1", stream.read)
    while True:
        data = _read_once(read)
        if not data and _wait_until_readable(stream):
            data = _read_once(read)
            if data is None:  # woken for nothing: wait again
                continue
        if not data:
            return
        if not isinstance(data, (bytes, bytearray)):
            raise UsageError("a bundle stream must be binary: open the file with 'rb', or pass the text itself as a str")
        advance(len(data))
        yield data


def _read_once(read: Callable[[int], bytes | None]) -> bytes | None:
    """Return the next chunk, b"" at the end, or None for "nothing yet" from a non-blocking stream."""
    try:
        return read(CHUNK_SIZE)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise DiskError(f"cannot read the bundle: {_reason(exc)}") from None


def _wait_until_readable(stream: IO[bytes]) -> bool:
    """If STREAM is a non-blocking descriptor, wait until it can be read and return True; else return False."""
    try:
        fd = stream.fileno()
        if os.get_blocking(fd):
            return False
    except (OSError, ValueError, AttributeError):  # not a real descriptor, or a system that cannot tell
        return False
    _wait_for(fd, readable=True)
    return True


def _wait_for(fd: int, readable: bool) -> None:
    """Wait until the non-blocking descriptor FD can be read (READABLE) or written."""
    import select

    try:
        if hasattr(select, "poll"):  # select() cannot watch a descriptor of 1024 or more
            poller = select.poll()
            poller.register(fd, select.POLLIN if readable else select.POLLOUT)
            poller.poll()
        else:
            select.select([fd] if readable else [], [] if readable else [fd], [])
    except (OSError, ValueError):  # a descriptor no call can wait on: wait a little instead
        import time

        time.sleep(0.01)


def _walk(events: Iterable[Event], windows: bool, reporter: _Sink, consumer: _Consumer) -> None:
    """Check every name and hand each valid block's body to CONSUMER; warn through REPORTER as lines pass.

    Raises every error of the run at once, in line order: bad names, near
    misses that would lose a file and, when anything else fails, the target
    problems CONSUMER collected (its `errors`: conflicts, a folder at a
    target); the structure error that ended the parse, if any, comes last.
    """
    index = NameIndex()
    errors: list[SplitError] = []
    held: list[SplitWarning] = []  # warnings after the first error: they are reported with the errors, in line order

    def warn(message: str, line: int) -> None:
        if errors:
            held.append(SplitWarning(message, line))
        else:
            reporter.warning(message, line)

    current: Entry | None = None
    opened: Open | None = None
    structure: BundleError | None = None
    try:
        for event in events:
            if type(event) is Body:
                if current is not None:
                    consumer.write(current, event.data)
            elif type(event) is Open:
                current = None
                opened = event
                name = event.name
                reasons = check_name(name, windows)
                clash = None if reasons else index.add(name, event)
                if reasons or clash:
                    why = "; ".join(reasons) if reasons else clash
                    errors.append(InvalidNameError(f"invalid name {quote(name)}: {why}", event.line, name))
                elif not errors:  # once the run must fail, stage nothing more
                    current = consumer.add(name, event)
            elif type(event) is Close:
                if current is not None:
                    consumer.end(current)
                    reporter.staged += 1
                current = None
            elif type(event) is NearMiss:
                shown = quote(event.text.decode("utf-8", "replace"))
                if event.closed_by is not None:
                    errors.append(BundleError(
                        f"{shown} is not a marker, so the file that line {event.closed_by.line} closes would be"
                        f" lost: {event.why}",
                        event.line,
                    ))
                else:
                    warn(f"{shown} looks like a marker but is not one, so it was ignored: {event.why}",
                                     event.line)
            elif type(event) is Fenced and opened is not None:
                first, last = opened.line + 1, event.line - 1
                warn(
                    f"the body of {quote(opened.name)} starts with a Markdown fence (line {first}) and ends"
                    f" with one (line {last}); both are kept, as bodies are exact: delete those two lines"
                    " if they are not part of the file",
                    first,
                )
    except BundleError as exc:
        structure = exc
    if not errors and structure is None:
        return  # the consumer's own errors, if any, are raised where it commits
    collected = getattr(consumer, "errors", None) or []
    found = sorted(errors + collected, key=lambda error: error.line or 0)
    if structure is not None:
        found.append(structure)
    failure = _combined(found)
    failure.warnings = held
    raise failure


class _Collector:
    """A consumer that writes no file: it keeps the names, and the bodies asked for.

    Kept bodies go back to back into one spool that spills to a temporary
    file, so memory stays bounded whatever their sizes; each costs two
    numbers in arrays, by entry number, and is found by name too, but with
    --diff, which keeps every body and looks each up by its entry.
    """

    def __init__(self, wanted: Iterable[str] | None = (), writer: Writer | None = None) -> None:
        from array import array

        self._records = _Records()  # without a writer: every block's name and line
        self.wanted = None if wanted is None else set(wanted)  # None: every body
        self._starts = array("q")  # where each entry's body starts in the spool (-1: not kept)
        self._sizes = array("q")
        self._numbers: dict[str, int] = {}  # without a writer: the entry number of each kept body, by name
        self.writer = writer  # with --diff, a dry-run writer that looks at each target
        self._spool: IO[bytes] | None = None
        self._kept: Entry | None = None  # the block whose body is being kept
        self._start = 0

    @property
    def spool(self) -> IO[bytes]:
        """The stream that holds the kept bodies."""
        if self._spool is None:
            import tempfile

            self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        assert self._spool is not None
        return self._spool

    def add(self, name: str, origin: Origin) -> Entry | None:
        """Note NAME, from ORIGIN, and start keeping its body if it is wanted; None if it cannot be written."""
        self._kept = None
        entry = self.writer.add(name, origin) if self.writer else self._records.append(name, origin)
        if entry is not None and (self.writer or self.wanted is None or name in self.wanted):
            self._kept = entry
            self._start = self.spool.seek(0, os.SEEK_END)
        return entry

    @property
    def names(self) -> list[str]:
        """The names of the blocks, in bundle order (without a writer)."""
        return self._records.names

    def write(self, entry: Entry, data: Buffer | memoryview) -> None:
        """Take DATA, the next piece of ENTRY's body."""
        if self.writer:
            self.writer.write(entry, data)
        if entry is self._kept:
            self.spool.write(data)

    def end(self, entry: Entry) -> None:
        """Finish ENTRY's body."""
        if self.writer:
            self.writer.end(entry)
        if entry is self._kept:
            number = entry.number
            while len(self._starts) <= number:  # a number is new, or the last one again (a writer dropped it)
                self._starts.append(-1)
                self._sizes.append(-1)
            self._starts[number] = self._start
            self._sizes[number] = self.spool.tell() - self._start
            if self.writer is None:
                self._numbers[entry.name] = number
            self._kept = None

    def has_body(self, name: str) -> bool:
        """Tell whether the body of NAME is kept (without a writer)."""
        return name in self._numbers

    def body(self, name: str) -> bytes:
        """Return the whole body of NAME (in memory: for callers that want bytes)."""
        return b"".join(_read_span(*self.body_span(name)))

    def body_span(self, which: str | Entry) -> Span:
        """Return where the body of WHICH (a name, or an entry) is kept, to be read in chunks: (stream, start, size)."""
        number = which.number if isinstance(which, Entry) else self._numbers[which]
        return self.spool, self._starts[number], self._sizes[number]

    def close(self) -> None:
        """Drop the kept bodies."""
        if self._spool is not None:
            self._spool.close()
        if self.writer:
            self.writer.close()


def _widen_pipe(stream: IO[bytes]) -> None:
    """Let a pipe on STREAM hold a whole chunk (Linux), so that each read returns more than 64 KiB."""
    try:
        if not stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode):
            return
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK_SIZE)
    except (OSError, ValueError, AttributeError, ImportError):  # no such pipe, or a system without it
        pass


def _rereader(path: str) -> Reread:
    """Return a function that reads the bundle file at PATH again, from one offset to another."""

    def reread(start: int, end: int) -> Iterator[bytes]:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                while start < end:
                    data = f.read(min(CHUNK_SIZE, end - start))
                    if not data:
                        return
                    start += len(data)
                    yield data
        except OSError:  # only line numbers for messages depend on it
            return

    return reread


def _extract(
    inp: _Input, writer: Writer, windows: bool, sink: _Sink, on_checked: Callable[[], None] | None = None
) -> _Records:
    """Split INP through WRITER, all or nothing; return its entries, in bundle order.

    This is the one place a bundle is written, for extract() and for the
    command line alike: any exception, KeyboardInterrupt included, is
    followed by a complete rollback, and what the rollback could not undo
    goes to SINK before the exception goes on. ON_CHECKED is called once the
    whole bundle is read and checked, before the commit.
    """
    try:
        _walk(inp.events(), windows, sink, writer)
        if on_checked is not None:
            on_checked()
        leftovers = writer.commit()
    except BaseException:
        while True:  # an interrupt (a library's Ctrl-C) has the rollback go on: each undo looks before it acts
            try:
                problems = writer.rollback()
                break
            except KeyboardInterrupt:
                continue
        for problem in problems:
            sink.problem(problem)
        raise
    finally:
        writer.close()
    for problem in leftovers:
        sink.warning(problem)
    return writer.entries


def _collect(inp: _Input, windows: bool, sink: _Sink, wanted: Iterable[str] | None = ()) -> _Collector:
    """Read INP with every check, writing nothing; return the names and the bodies WANTED (None: every body)."""
    collector = _Collector(wanted)
    try:
        _walk(inp.events(), windows, sink, collector)
    except BaseException:
        collector.close()
        raise
    return collector


def _diff_entry(writer: Writer, collector: _Collector, entry: Entry, out: _ByteSink, visible: bool) -> None:
    """Write to OUT the diff from ENTRY's target to its body kept by COLLECTOR (VISIBLE: for a terminal)."""
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as old:
        try:
            writer.read_target(entry, old)  # a copy: the target may change while the diff reads it twice
        except OSError as exc:
            raise DiskError(f"cannot read {quote(entry.name)}: {_reason(exc)}", entry.line) from None
        _diff(entry.name, entry.status == "new", (old, 0, old.tell()), collector.body_span(entry), out, visible)


def _write_diffs(
    inp: _Input, output: str, windows: bool, sink: _Sink, out_for: Callable[[Entry], _ByteSink], visible: bool
) -> None:
    """Write the diff of every file INP would create or change under OUTPUT to out_for(entry), in bundle order.

    VISIBLE: the diff goes to a terminal, so control characters are shown
    escaped. Writes no file; a target that can never be written is an error.
    """
    writer = Writer(output, force=True, dry_run=True)
    collector = _Collector((), writer)
    try:
        _walk(inp.events(), windows, sink, collector)
        if writer.errors:
            raise _combined(writer.errors)
        for entry in writer.entries:
            if entry.status != "same":
                _diff_entry(writer, collector, entry, out_for(entry), visible)
    finally:
        collector.close()


def _api_call(
    bundle: Bundle, on_warning: Callable[[SplitWarning], None] | None, job: Callable[[_Input, _Sink], T]
) -> T:
    """Open BUNDLE, run JOB on it with warnings going to ON_WARNING, and close it again."""
    sink = _Sink(on_warning)
    inp = _open_input(bundle, sink)
    try:
        return job(inp, sink)
    except SplitError as exc:
        for warning in exc.warnings:  # the lines after the first problem: still passed on
            sink.warning(warning.message, warning.line)
        if isinstance(exc, BundleError) and isinstance(bundle, str) and "\n" not in bundle and os.path.isfile(bundle):
            # The one mistake the str-is-text rule invites: say how to pass a path.
            exc.message += f"; to read the file {quote(bundle)}, pass pathlib.Path({bundle!r})"
        raise
    finally:
        inp.close()


def extract(
    bundle: Bundle,
    output: str | os.PathLike[str] = ".",
    *,
    force: bool = False,
    dry_run: bool = False,
    portable: bool = False,
    sync: bool = False,
    on_warning: Callable[[SplitWarning], None] | None = None,
) -> list[FileResult]:
    """Write every file of BUNDLE under OUTPUT, all or nothing; return what was done with each, in bundle order.

    The same checks and the same writer as the command line: OUTPUT is made
    if missing; nothing under it changes unless every block is well formed,
    every name valid and every target writable; any exception (a bad bundle,
    a full disk, KeyboardInterrupt) leaves OUTPUT as it was. FORCE replaces
    files with other content (else a ConflictError); DRY_RUN checks all and
    writes nothing; PORTABLE adds the Windows name rules; SYNC flushes each
    file and folder to disk. Installs no signal handler and prints nothing:
    warnings go to ON_WARNING, if given.
    """
    folder = _path_arg(output, "the output folder")

    def job(inp: _Input, sink: _Sink) -> list[FileResult]:
        writer = Writer(folder, force=force, dry_run=dry_run, sync=sync)
        entries = _extract(inp, writer, portable or os.name == "nt", sink)
        return [FileResult(entry.name, entry.status, entry.line) for entry in entries]

    return _api_call(bundle, on_warning, job)


def read(
    bundle: Bundle, *, portable: bool = False, on_warning: Callable[[SplitWarning], None] | None = None
) -> list[tuple[str, bytes]]:
    """Return the files of BUNDLE as (name, body) pairs, in bundle order, after every check; nothing is written.

    For programs that apply files through a layer of their own: each name has
    passed the same rules as for extract() (relative, no '..', no control
    characters, no collisions), so it is safe to join to a folder.
    """

    def job(inp: _Input, sink: _Sink) -> list[tuple[str, bytes]]:
        collector = _collect(inp, portable or os.name == "nt", sink, None)
        try:
            return [(name, collector.body(name)) for name in collector.names]
        finally:
            collector.close()

    return _api_call(bundle, on_warning, job)


def list_names(
    bundle: Bundle, *, portable: bool = False, on_warning: Callable[[SplitWarning], None] | None = None
) -> list[str]:
    """Return the names of BUNDLE's files, in bundle order, after every check of the bundle and its names."""

    def job(inp: _Input, sink: _Sink) -> list[str]:
        collector = _collect(inp, portable or os.name == "nt", sink)
        collector.close()
        return collector.names

    return _api_call(bundle, on_warning, job)


def diff(
    bundle: Bundle,
    output: str | os.PathLike[str] = ".",
    *,
    portable: bool = False,
    on_warning: Callable[[SplitWarning], None] | None = None,
) -> list[FileDiff]:
    """Return a unified diff for every file BUNDLE would create or change under OUTPUT; nothing is written.

    Files that would stay the same are left out, so an empty list means
    extract() would change nothing.
    """
    folder = _path_arg(output, "the output folder")

    def job(inp: _Input, sink: _Sink) -> list[FileDiff]:
        import io

        found: list[tuple[Entry, io.BytesIO]] = []

        def out_for(entry: Entry) -> io.BytesIO:
            found.append((entry, io.BytesIO()))
            return found[-1][1]

        _write_diffs(inp, folder, portable or os.name == "nt", sink, out_for, False)
        return [FileDiff(entry.name, entry.status, entry.line, text.getvalue()) for entry, text in found]

    return _api_call(bundle, on_warning, job)


if TYPE_CHECKING:
    import argparse

    _Consumer = Union[Writer, _Collector]


# ---------------------------------------------------------------------------
# Command line: arguments in, API calls, results and diagnostics out
# ---------------------------------------------------------------------------


class _Reporter(_Sink):
    """Writes diagnostics and the progress line to stderr.

    Diagnostics read `splitfile: KIND: SOURCE:LINE: message`. The progress
    line appears only on a terminal, after about a second, and is erased
    before any diagnostic and at the end. A stderr that is closed or full
    loses the message but never fails the run.
    """

    def __init__(self, source: str, quiet: bool, total: int | None = None) -> None:
        super().__init__()
        self.source = source
        self.quiet = quiet
        self.total = total  # bundle size, when known
        self.read = 0  # bytes read so far
        self._shown = 0  # length of the progress line on screen
        self._next = 0.0  # when the progress line may next be drawn
        self._progress = not quiet and _is_terminal(sys.stderr)
        if self._progress:
            import time

            self._clock = time.monotonic
            self._next = self._clock() + 1.0

    def say(self, kind: str, text: str) -> None:
        """Write `splitfile: KIND: TEXT` (unless a warning under -q)."""
        if kind == "warning" and self.quiet:
            return
        self.clear()
        _write_stderr(f"splitfile: {kind}: {text}\n")

    def error(self, exc: SplitError) -> None:
        """Report each error EXC holds, and the warnings that came with them, in line order."""
        found: list[SplitError | SplitWarning] = [*exc.errors, *exc.warnings]
        found.sort(key=lambda each: (each.line is None, each.line or 0))  # stable: errors first on a line
        for each in found:
            if isinstance(each, SplitWarning):
                self.warning(each.message, each.line)
            else:
                self.say("error", each.render("" if isinstance(each, UsageError) else self.source))

    def warning(self, message: str, line: int | None = None) -> None:
        """Report a warning unless -q was given."""
        self.say("warning", SplitWarning(message, line).render(self.source))

    def problem(self, message: str) -> None:
        """Report what a rollback could not undo, as an error."""
        self.error(DiskError(message))

    def advance(self, size: int) -> None:
        """Count SIZE more bytes read; redraw the progress line a few times a second."""
        self.read += size
        if self._progress and self._clock() >= self._next:
            self._next = self._clock() + 0.25
            of = f" of {_size(self.total)}" if self.total else ""
            text = f"splitfile: {_size(self.read)}{of} read, {self.staged} files staged"
            _write_stderr("\r" + text.ljust(self._shown))
            self._shown = len(text)

    def clear(self) -> None:
        """Erase the progress line, if one is shown."""
        if self._shown:
            _write_stderr("\r" + " " * self._shown + "\r")
            self._shown = 0


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _size(count: int | None) -> str:
    """Return COUNT bytes in the largest unit that keeps it at least 1."""
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def _write_stdout(data: bytes) -> None:
    """Write DATA to stdout as bytes, whatever stdout is; raise _OutputLost if it cannot take them."""
    stream = sys.stdout
    try:
        if stream is None:
            raise OSError(errno.EBADF, "it is closed")
        stream.flush()
        buffer = getattr(stream, "buffer", None)
        fd = _descriptor(stream)
        if fd is not None:
            _write_all(fd, data)
        elif buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            stream.write(data.decode("utf-8", "surrogateescape"))
            stream.flush()
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        _silence(stream)
        raise _OutputLost(exc) from None


def _descriptor(stream: object) -> int | None:
    """Return the descriptor under STREAM, or None if it has none (a stream in memory)."""
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    """Write all of DATA to FD, waiting whenever a non-blocking one is full: a short write never loses the rest."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            _wait_for(fd, readable=False)


def _print_lines(lines: Iterable[str]) -> None:
    """Print LINES to stdout as UTF-8, one a line, in pieces of about CHUNK_SIZE: never all of them at once."""
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line) + 1
        if size >= CHUNK_SIZE:
            _write_stdout(("\n".join(batch) + "\n").encode("utf-8", "surrogateescape"))
            batch, size = [], 0
    if batch:
        _write_stdout(("\n".join(batch) + "\n").encode("utf-8", "surrogateescape"))


def _write_stderr(text: str) -> None:
    """Write TEXT to stderr if it can take it: a diagnostic never fails a run."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        _silence(stream)


def _silence(stream: object) -> None:
    """Point STREAM's descriptor at the null device, so that the interpreter's final flush cannot fail the exit."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


class _OutputLost(Exception):
    """Standard output could not take what was printed: closed, full, or its reader gone."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(_reason(exc))
        self.reason = _reason(exc)
        self.broken_pipe = isinstance(exc, BrokenPipeError)


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            # argparse quotes arguments as given: one holding a newline or an
            # escape (a file name a glob matched) must not forge a line.
            super().error("".join(ch if ch.isprintable() else _escape(ch) for ch in message))

    parser = Parser(
        prog="splitfile",
        usage="python splitfile.py [BUNDLE] [-o DIR] [-f] [-n | -l | -p NAME | --diff | --pack PATH...] [-v] [-q]"
        " [--portable] [--sync]",
        description="Split a bundle of <<<FILE name>>> ... <<<END name>>> blocks into files, all or"
        " nothing: nothing is written unless every block is valid and every target can be written.",
        epilog="examples:\n"
        "  python splitfile.py bundle.txt -o out           split bundle.txt into out/\n"
        "  llm 'a demo app' | python splitfile.py -o src --diff\n"
        "                                                  review what a piped answer would change\n"
        "  python splitfile.py --pack src > bundle.txt     bundle a folder; split it back with -o\n"
        "\nexit status: 0 success; 1 bad bundle, conflict or file error (nothing written);"
        " 2 usage error; 130, 143, 129 interrupted (nothing written)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("bundle", nargs="?", metavar="BUNDLE", help="the bundle file, or - for stdin (default: stdin)")
    add("-o", "--output", metavar="DIR", default=".", help="folder to write into (default: .)")
    add("-f", "--force", action="store_true", help="replace files that exist with other content")
    mode = parser.add_mutually_exclusive_group().add_argument
    mode("-n", "--dry-run", action="store_true", help="check everything, write nothing, print the plan")
    mode("-l", "--list", action="store_true", help="print the names in the bundle; write nothing")
    mode("-p", "--print", action="append", metavar="NAME", dest="print_names",
         help="write the body of NAME to stdout instead of writing files (repeatable)")
    mode("--diff", action="store_true", help="print a unified diff of what the bundle would change; write nothing")
    mode("--pack", nargs="+", metavar="PATH", help="write a bundle of these files and folders to stdout")
    add("-v", "--verbose", action="store_true", help="after writing, print 'STATUS NAME' for each file")
    add("-q", "--quiet", action="store_true", help="print no warnings and no progress")
    add("--portable", action="store_true", help="also refuse names that Windows cannot hold")
    add("--sync", action="store_true", help="flush files and folders to disk before finishing")
    add("--version", action="version", version=f"splitfile {__version__}")
    return parser


def _cli_input(args: argparse.Namespace, reporter: _Reporter) -> _Input:
    """Return the bundle the command line names: a file, or stdin without BUNDLE or with '-'."""
    if args.bundle not in (None, "-"):
        inp = _file_input(args.bundle, reporter)
        reporter.total = inp.size
        return inp
    stdin = sys.stdin
    if stdin is None:
        raise UsageError("no bundle given and no standard input; name a bundle file")
    if args.bundle is None and _is_terminal(stdin):
        raise UsageError(
            "no bundle given and standard input is a terminal; name a bundle file, or pipe one in (see --help)"
        )
    return _Input("<stdin>", _read_chunks(stdin.buffer, reporter.advance))


def _cli_extract(args: argparse.Namespace, inp: _Input, windows: bool, reporter: _Reporter, guard: SignalGuard) -> int:
    """Split the bundle into -o DIR (or only check it, with -n); print the status lines asked for."""
    writer = Writer(args.output, force=args.force, dry_run=args.dry_run, sync=args.sync, guard=guard)
    checked: list[bool] = []
    try:
        entries = _extract(inp, writer, windows, reporter, lambda: checked.append(True))
    except (Interrupted, KeyboardInterrupt):
        # A signal can land after another failure and before the rollback
        # starts; the journal keeps what is left, so roll back again (at most
        # one signal is ever raised, so this one runs to its end).
        for problem in writer.rollback():
            reporter.problem(problem)
        raise
    except SplitError:
        if args.dry_run and checked:  # the plan, then why the real run would fail
            reporter.clear()
            _print_lines(f"{entry.status} {entry.name}" for entry in writer.entries)
        raise
    reporter.clear()
    if args.verbose or args.dry_run:
        try:
            _print_lines(f"{entry.status} {entry.name}" for entry in entries)
        except _OutputLost as exc:
            if args.dry_run:
                raise
            # The files are in place: exit 1 would claim nothing was written.
            reporter.say("warning", f"every file is in place, but the status lines could not be printed: {exc.reason}")
    return EXIT_OK


def _cli_inspect(args: argparse.Namespace, inp: _Input, windows: bool, reporter: _Reporter) -> int:
    """Run -l, -p or --diff: read the whole bundle, check it, print; write no file."""
    if args.diff:
        stdout = _StdoutBytes()

        def out_for(entry: Entry) -> _ByteSink:
            reporter.clear()
            return stdout

        _write_diffs(inp, args.output, windows, reporter, out_for, _is_terminal(sys.stdout))
        return EXIT_OK
    collector = _collect(inp, windows, reporter, args.print_names or ())
    try:
        reporter.clear()
        if args.list:
            _print_lines(collector.names)
            return EXIT_OK
        missing = [name for name in args.print_names if not collector.has_body(name)]
        if missing:
            raise _combined([SplitError(f"the bundle has no block named {quote(name)}", None, name) for name in missing])
        for name in args.print_names:
            for data in _read_span(*collector.body_span(name)):
                _write_stdout(data)
    finally:
        collector.close()
    return EXIT_OK


class _StdoutBytes:
    """Stdout as a binary stream, whatever stdout is."""

    def write(self, data: bytes) -> None:
        """Write DATA to stdout."""
        _write_stdout(data)


def _pack(args: argparse.Namespace, reporter: _Reporter) -> int:
    """Run --pack: write the bundle to stdout only if every file could be bundled."""
    pack(args.pack, _StdoutBytes(), portable=args.portable, on_warning=lambda warning: reporter.warning(warning.message))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run splitfile with ARGV (default: sys.argv[1:]); return the exit status."""
    # The script itself leaves the signals ignored on its way out: once the
    # outcome is decided, no signal may kill it. A caller keeps its handlers.
    try:
        with SignalGuard(restore=__name__ != "__main__") as guard:
            try:
                return _main(argv, guard)
            except (Interrupted, KeyboardInterrupt) as exc:
                guard.settle()
                return _interrupted(exc)
    except (Interrupted, KeyboardInterrupt) as exc:  # as the guard was set up, before any work
        return _interrupted(exc)


def _interrupted(exc: BaseException) -> int:
    """Say that the run was interrupted (if stderr can take it); return the exit status for the signal."""
    _write_stderr("splitfile: error: interrupted; nothing was written\n")
    return 128 + (exc.signum if isinstance(exc, Interrupted) else 2)


def _main(argv: Sequence[str] | None, guard: SignalGuard) -> int:
    """Run splitfile with ARGV under GUARD; an interrupt is left to main."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    source = "" if args.pack else "<stdin>" if args.bundle in (None, "-") else args.bundle
    reporter = _Reporter(source, args.quiet)
    windows = args.portable or os.name == "nt"
    inp: _Input | None = None
    try:
        try:
            if args.pack and args.bundle is not None:
                raise UsageError("--pack takes paths to bundle, not a BUNDLE to split", show_usage=True)
            if args.pack:
                return _pack(args, reporter)
            inp = _cli_input(args, reporter)
            if args.list or args.print_names or args.diff:
                return _cli_inspect(args, inp, windows, reporter)
            return _cli_extract(args, inp, windows, reporter, guard)
        except SplitError as exc:
            guard.settle()  # the outcome is decided: a signal now changes nothing
            reporter.clear()
            if isinstance(exc, UsageError) and exc.show_usage:
                _write_stderr(parser.format_usage())
            reporter.error(exc)
            return exc.exit_status
        except (MemoryError, ImportError):  # out of memory, even to load a module: the writer has rolled back
            guard.settle()
            reporter.say("error", "out of memory; nothing was written (free some memory and run again)")
            return EXIT_FAILURE
        except (Interrupted, KeyboardInterrupt) as exc:
            guard.settle()
            reporter.clear()
            return _interrupted(exc)
        except _OutputLost as exc:
            guard.settle()
            if not exc.broken_pipe:  # a reader that went away wants nothing more, not even a message
                reporter.say("error", f"cannot write to standard output: {exc.reason}")
            return EXIT_FAILURE
        except OSError as exc:  # a failing disk that no layer above named: still no traceback
            guard.settle()
            reporter.error(DiskError(_reason(exc)))
            return EXIT_FAILURE
    finally:
        if inp is not None:
            inp.close()


if __name__ == "__main__":
    sys.exit(main())
