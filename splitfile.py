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
    from typing import IO, Callable, Dict, Final, Iterable, Iterator, Protocol, Sequence, Tuple, Union

    class _HasLine(Protocol):
        @property
        def line(self) -> int: ...

    class _Named(_HasLine, Protocol):
        name: str

    Origin = Union[int, _HasLine]  # a line number, or something that finds its own (an Open event)
    _Seen = Union[Tuple[str, Origin], _Named]  # a name and where it is: an Open event is both
    _Folder = Dict[str, Union["_Folder", _Seen]]  # NameIndex's tree
    Handle = Union[int, str]  # a folder: a descriptor, or a path without dir_fd

__version__ = "1.0.0"

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

OPEN_PREFIX: Final = b"<<<FILE "
CLOSE_PREFIX: Final = b"<<<END "
MARKER_SUFFIX: Final = b">>>"

MAX_NAME_BYTES: Final = 4096
MAX_PART_BYTES: Final = 255
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
    """A failure shown as `splitfile: error: SOURCE:LINE: message` (exit 1)."""

    exit_status = EXIT_FAILURE

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class BundleError(SplitError):
    """The bundle's structure is wrong: encoding, markers, no block at all."""


class InvalidNameError(SplitError):
    """A block's name breaks a name rule or collides with another block's."""


class ConflictError(SplitError):
    """A target holds other content and -f was not given."""


class TargetError(SplitError):
    """A target or a folder on its path is something that is never replaced."""


class DiskError(SplitError):
    """The operating system refused a read or a write."""


class UsageError(SplitError):
    """The command line is wrong (exit 2)."""

    exit_status = EXIT_USAGE


class ErrorList(SplitError):
    """Several errors found in one run, all to be reported."""

    def __init__(self, errors: Sequence[SplitError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = list(errors)


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
    """Return NAME quoted for a diagnostic, with odd characters escaped."""
    out = []
    for ch in name:
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
    return "'" + "".join(out) + "'"


def check_name(name: str, windows: bool = False) -> list[str]:
    """Return every reason NAME may not be written; an empty list means valid.

    NAME is the marker's text decoded with `surrogateescape`, so bytes that
    are not UTF-8 show up as lone surrogates. WINDOWS adds the rules that keep
    a name portable to Windows (always on there, and with --portable).
    """
    import unicodedata

    if not name:
        return ["the name is empty"]
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


class NameIndex:
    """The names seen so far, to refuse two that would land on the same file.

    A tree of dicts keyed by canonical part: a folder is a dict (its "" entry
    tells which name first needed it), a file is where its name was seen (the
    Open event itself when it carries the name, else a (name, origin) pair).
    So memory and time grow with the total length of the names, however deep.
    """

    def __init__(self) -> None:
        self._root: _Folder = {}

    def add(self, name: str, origin: Origin = 0) -> str | None:
        """Record NAME, from ORIGIN (a line, 0 for none); return why it collides with an earlier name, if it does."""
        key = name_key(name)
        folder = self._root
        depth = 0
        for depth, part in enumerate(key[:-1]):  # noqa: B007 (depth is used after the loop)
            below = folder.get(part)
            if below is None:
                break
            if not isinstance(below, dict):
                return f"{quote(name)} needs {_earlier(below)} as a folder, but it is a file"
            folder = below
        else:
            clash = folder.get(key[-1])
            if isinstance(clash, dict):
                return f"{quote(name)} is a file, but {_earlier(clash[''])} needs it as a folder"
            if clash is not None and _seen(clash)[0] == name:
                first = _seen(clash)[1]
                return f"{quote(name)} appears twice" + (f"; the first block is at line {first}" if first else "")
            if clash is not None:
                return (
                    f"{quote(name)} and {_earlier(clash)} differ only in case or Unicode form;"
                    " they would overwrite each other on macOS and Windows"
                )
        # An Open event already holds the name: keeping it alone saves a tuple a file.
        seen: _Seen = origin if getattr(origin, "name", None) is name else (name, origin)  # type: ignore[assignment]
        for part in key[depth:-1]:  # the folders no earlier name has
            made: _Folder = {"": seen}
            folder[part] = made
            folder = made
        folder[key[-1]] = seen
        return None


def _seen(seen: _Seen | _Folder) -> tuple[str, int]:
    """Return the name and line (0 for none) that NameIndex kept."""
    assert not isinstance(seen, dict), "a folder's own entry is where it was first needed"
    if isinstance(seen, tuple):
        return seen[0], _line_of(seen[1])
    return seen.name, seen.line


def _line_of(origin: Origin) -> int:
    """Return the line number of ORIGIN: a number, or an event whose line may be found only now."""
    return origin if isinstance(origin, int) else origin.line


def _earlier(seen: _Seen | _Folder) -> str:
    """Return an earlier name quoted, with its line if it has one."""
    name, line = _seen(seen)
    return f"{quote(name)} (line {line})" if line else quote(name)


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

    __slots__ = ("_reread", "_counted")

    def __init__(self, reread: Reread) -> None:
        super().__init__()
        self._reread = reread
        self._counted = (0, 0)  # (offset, newlines before it) found so far

    def now(self) -> int:
        return 0

    def at(self, offset: int) -> int:
        start, newlines = self._counted
        if offset < start:  # an earlier line than any asked for so far: count from the top
            start, newlines = 0, 0
        for chunk in self._reread(start, offset):
            newlines += chunk.count(b"\n")
        self._counted = (offset, newlines)
        return newlines + 1

    def passed(self, block: _Block, buf: Buffer, start: int, end: int, at_line_start: bool) -> None:
        pass  # the body is read again for the hint only if the block is never closed

    def again(self, start: int, end: int) -> Iterable[bytes] | None:
        return self._reread(start, end)


class _Located:
    """An event that happened on a line; the line number may be found only when asked for."""

    __slots__ = ("_where", "_lines")

    def __init__(self, offset: int, line: int, lines: _Lines) -> None:
        # One number, kept per block for a late message: the line if known,
        # else -1 - the offset where the line starts in the bundle.
        self._where = line or -1 - offset
        self._lines = lines

    @property
    def line(self) -> int:
        """The number of the line, from 1."""
        where = self._where
        if where < 0:
            where = self._where = self._lines.at(-1 - where)
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


# What chat answers wrap markers in: Markdown quotes, lists, bold, code spans.
_DECORATION = b" \t\r\n\v\f>*_`~-+"
_BLANKS = b" \t\v\f\r"
_TRAILING_DECORATION = b" \t\v\f*_`~"  # not '>': a marker ends with '>>>'
_MORE_HINTS = 100  # how many more likely closes of a never-closed block are counted
_FENCE_LOOK = 64  # a fence line (```python) is short: this much of a body's head and tail tells


def _is_near_miss(text: bytes) -> bool:
    """Tell whether TEXT, not an exact marker, looks like a mistyped one."""
    core = text.strip().lstrip(_DECORATION)
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
    if name != name.lstrip(_BLANKS):
        problems.append(f"it has more than one blank after {word}")
        name = name.lstrip(_BLANKS)
    if name != name.rstrip(_BLANKS):
        problems.append("it has a blank before '>>>'")
        name = name.rstrip(_BLANKS)
    return word, name, problems


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
                message += f"; the block holds at least {more} more such lines"
            elif more:
                message += f"; the block holds {more} more such line{'s' if more > 1 else ''}"
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
            opener = self._opening.get(text[len(CLOSE_PREFIX):-len(MARKER_SUFFIX)])
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
            if keyword == b"END" and self._opening:  # an unnamed close closes the last FILE line
                opener = self._opening.pop(name or list(self._opening)[-1], None)
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
    """Turn SIGINT, SIGTERM and SIGHUP into Interrupted, except where deferred.

    While `deferring` is set (renames being made or undone), a signal is only
    noted in `pending`; once `finished` is set the run has succeeded and late
    signals are ignored. Handlers are installed only in the main thread.
    """

    def __init__(self) -> None:
        self.deferring = False
        self.finished = False
        self.pending: int | None = None
        self._saved: dict[int, object] = {}

    def __enter__(self) -> SignalGuard:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGHUP"):
                if hasattr(signal, name):
                    signum = getattr(signal, name)
                    self._saved[signum] = signal.signal(signum, self._handle)
            if hasattr(signal, "SIGXFSZ"):  # a file-size limit becomes an error (EFBIG)
                self._saved[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.finished:
            return
        if self.deferring:
            self.pending = signum
            return
        raise Interrupted(signum)

    def check(self) -> None:
        """Raise Interrupted for a signal that arrived while deferred."""
        if self.pending is not None and not self.finished:
            raise Interrupted(self.pending)

    def hold(self) -> None:
        """Defer signals: a step and its record must not be split by one."""
        self.deferring = True

    def release(self) -> None:
        """Stop deferring; raise Interrupted if a signal came meanwhile."""
        self.deferring = False
        self.check()


class _Tree:
    """Filesystem calls below DIR that never follow a symlink.

    With dir_fd (POSIX) a folder is an open descriptor, and each folder is
    opened relative to its parent with O_NOFOLLOW, so a symlink swapped in
    during the run is not followed either. Without it (Windows) a folder is a
    path and every step is checked with lstat first.
    """

    def __init__(self, root: str, use_dir_fd: bool, guard: SignalGuard) -> None:
        self.use_dir_fd = use_dir_fd
        self.guard = guard
        self.root = root
        self._folders: dict[tuple[str, ...], Handle] = {}
        self.created: list[tuple[str, ...]] = []  # folders this run made, in order
        self.new_folders: set[tuple[str, ...]] = set()  # made by this run: nothing was in them

    def open_root(self) -> None:
        """Open DIR itself; DIR may be a symlink, since the user named it."""
        if self.use_dir_fd:
            self._folders[()] = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC)
        else:
            self._folders[()] = self.root

    def close(self) -> None:
        """Close every folder descriptor."""
        for handle in self._folders.values():
            if isinstance(handle, int):
                _close_quietly(handle)
        self._folders.clear()

    @staticmethod
    def _at(folder: Handle, name: str) -> tuple[str, int | None]:
        """Return the path and dir_fd that name NAME in FOLDER."""
        if isinstance(folder, int):
            return name, folder
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
        """Make DST a second name of SRC's file; fails if DST exists."""
        (a, fd), (b, _) = self._at(folder, src), self._at(folder, dst)
        os.link(a, b, src_dir_fd=fd, dst_dir_fd=fd)

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

    def rmdir(self, folder: Handle, name: str) -> None:
        """Remove the empty folder NAME from FOLDER."""
        path, fd = self._at(folder, name)
        os.rmdir(path, dir_fd=fd)

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
        return parts in self.new_folders

    def folder(self, parts: tuple[str, ...], create: bool) -> Handle | None:
        """Return a handle on DIR/PARTS, making missing folders when CREATE.

        Returns None when a folder is missing and CREATE is false. Raises
        TargetError when a part exists but is not a real directory.
        """
        if () not in self._folders:  # DIR itself was never opened
            return None
        depth = len(parts)
        while parts[:depth] not in self._folders:
            depth -= 1
        handle = self._folders[parts[:depth]]
        for depth in range(depth + 1, len(parts) + 1):
            child = self._open_folder(handle, parts[:depth], create)
            if child is None:
                return None
            handle = self._folders[parts[:depth]] = child
        return handle

    def _open_folder(
        self, parent: Handle, parts: tuple[str, ...], create: bool
    ) -> Handle | None:
        name = parts[-1]
        try:
            return self._enter(parent, name)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP, getattr(errno, "EMLINK", -1)):
                raise
            raise TargetError(self._not_a_folder("/".join(parts), parent, name)) from None
        self.guard.hold()  # a folder made must be recorded, to be removed on rollback
        try:
            self.mkdir(parent, name)
            self.created.append(parts)
            self.new_folders.add(parts)
        except FileExistsError:  # made by someone else meanwhile: not ours
            pass
        finally:
            self.guard.release()
        return self._open_folder(parent, parts, False)

    def _enter(self, parent: Handle, name: str) -> Handle:
        if isinstance(parent, int):
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, dir_fd=parent)
        path = os.path.join(parent, name)
        st = os.lstat(path)
        reparse = getattr(st, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
        if not stat.S_ISDIR(st.st_mode) or reparse:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return path

    def _not_a_folder(self, shown: str, parent: Handle, name: str) -> str:
        try:
            what = _describe(self.lstat(parent, name).st_mode)
        except OSError:
            what = "not a real directory"
        return f"{quote(shown)} is {what}, not a real directory"

    def remove_created(self, problems: list[str]) -> None:
        """Remove, deepest first, every folder this run made."""
        for parts in reversed(self.created):
            handle = self._folders.pop(parts, None)
            if isinstance(handle, int):
                _close_quietly(handle)
            try:
                parent = self.folder(parts[:-1], False)
                if parent is None:
                    raise FileNotFoundError(errno.ENOENT, "missing")
                self.rmdir(parent, parts[-1])
            except CLEANUP_ERRORS as exc:
                problems.append(f"could not remove folder {quote('/'.join(parts))}: {_reason(exc)}")
        self.created.clear()


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


def _reason(exc: BaseException) -> str:
    """Return the human part of an error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, SplitError):
        return exc.message
    return str(exc) or type(exc).__name__


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


class Entry:
    """One block on its way to disk: what is at its target, where it is staged."""

    def __init__(self, name: str, origin: Origin) -> None:
        self.name = name
        self.origin = origin  # its FILE line, found only if a message needs it
        parts = name.split("/")
        self.folder_parts = tuple(parts[:-1])
        self.leaf = parts[-1]
        self.status = "new"  # then "same" or "changed" once compared
        self.old_mode: int | None = None  # permission bits of a replaced file
        self.old_is_link = False
        self.temp: str | None = None  # staged temporary file, while it exists
        self.fd: int | None = None  # the temporary file, while open
        self.compare_fd: int | None = None  # the existing file, while compared
        self.differs = False
        self.backup: str | None = None  # the replaced file's second name, while it exists
        self.backup_moved = False  # was the old file moved to `backup` (not linked)?
        self.placed = False  # is the new file under its real name?

    @property
    def line(self) -> int:
        """The line of the block's FILE marker."""
        return _line_of(self.origin)


class Writer:
    """Stage bodies next to their targets; commit all at once, or roll back.

    Use as: `entry = add(name, line)`, `write(entry, data)` for each piece,
    `end(entry)`; then `commit()`. Problems with targets are collected in
    `errors` so that all are reported; `commit()` raises them. Any exception
    must be followed by `rollback()`, which leaves DIR as it was.
    With `dry_run` nothing is written: targets are only compared.
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
        self.entries: list[Entry] = []
        self.errors: list[SplitError] = []
        self._tree = _Tree(root, use_dir_fd, self.guard)
        self._started = False
        self._have_root = False
        self._created_roots: list[str] = []
        self._token = os.urandom(6).hex()
        self._serial = 0
        self._rename_noreplace: Callable[[int, str, str], None] | None = None

    # -- staging -------------------------------------------------------------

    def _start(self) -> bool:
        """Make sure DIR exists (unless dry-run); return False if it does not."""
        if self._started:
            return self._have_root
        self._started = True
        root = self.root
        if self.dry_run:
            if not os.path.lexists(root):
                return False
        else:
            self._make_root(root)
        if not os.path.isdir(root):
            raise TargetError(f"output folder {quote(root)} is not a directory")
        self._tree.open_root()
        self._have_root = True
        if self._created_roots and self._created_roots[-1] == os.path.abspath(root):
            self._tree.new_folders.add(())  # DIR is new too: no target in it needs a look
        return True

    def _make_root(self, root: str) -> None:
        missing = []
        path = os.path.abspath(root)
        while not os.path.lexists(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for path in reversed(missing):
            self.guard.hold()
            try:
                os.mkdir(path)
                self._created_roots.append(path)
            except FileExistsError:
                pass
            finally:
                self.guard.release()

    def add(self, name: str, origin: Origin) -> Entry | None:
        """Look at NAME's target and start staging its body; None if it cannot be written.

        ORIGIN is the block's FILE line, or the Open event (its line is found only if needed).
        """
        entry = Entry(name, origin)
        self.entries.append(entry)  # from now on, rollback knows of it
        try:
            if not self._start():
                return entry  # dry run into a missing DIR: all new
            folder = self._tree.folder(entry.folder_parts, not self.dry_run)
            if folder is not None and not self._tree.is_new(entry.folder_parts):
                self._examine(entry, folder)
            if folder is not None and not self.dry_run and (entry.status == "new" or self.force):
                self._stage(entry, folder)
        except SplitError as exc:
            self.errors.append(TargetError(f"cannot write {quote(name)}: {exc.message}", entry.line))
            self.entries.pop()
            return None
        except OSError as exc:
            raise DiskError(f"cannot write {quote(name)}: {_reason(exc)}", entry.line) from None
        return entry

    def _examine(self, entry: Entry, folder: Handle) -> None:
        """Find out what is at ENTRY's target; open an existing file to compare."""
        try:
            st = self._tree.lstat(folder, entry.leaf)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            entry.status = "changed"
            entry.old_is_link = True
            entry.differs = True
        elif stat.S_ISREG(st.st_mode):
            fd = self._tree.open(folder, entry.leaf, os.O_RDONLY | O_NONBLOCK)
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
                os.close(fd)
                raise TargetError("it changed while it was being examined")
            entry.compare_fd = fd
            entry.status = "changed"  # until the comparison says "same"
            entry.old_mode = stat.S_IMODE(st.st_mode) & 0o777
        else:
            raise TargetError(f"it is {_describe(st.st_mode)}; only files are replaced")

    def _stage(self, entry: Entry, folder: Handle) -> None:
        """Create ENTRY's temporary file, never reusing an existing name."""
        while True:
            self._serial += 1
            temp = f"{TEMP_PREFIX}{self._token}-{self._serial}"
            self.guard.hold()  # a temporary file made must be recorded
            try:
                entry.fd = self._tree.open(folder, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                entry.temp = temp
            except FileExistsError:
                continue
            finally:
                self.guard.release()
            return

    def write(self, entry: Entry, data: Buffer | memoryview) -> None:
        """Stage DATA, the next piece of ENTRY's body, and compare it with the target."""
        try:
            if entry.compare_fd is not None:
                self._compare(entry, data)
            if entry.fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(entry.fd, view):]
        except OSError as exc:
            raise DiskError(f"cannot write {quote(entry.name)}: {_reason(exc)}", entry.line) from None

    def _compare(self, entry: Entry, data: Buffer | memoryview) -> None:
        fd = entry.compare_fd
        assert fd is not None
        old = b""
        while len(old) < len(data):
            more = os.read(fd, len(data) - len(old))
            if not more:
                break
            old += more
        if old != data:
            entry.differs = True
            entry.compare_fd = None
            os.close(fd)

    def end(self, entry: Entry) -> None:
        """Finish ENTRY's body: settle its status and close its temporary file."""
        try:
            if entry.compare_fd is not None:
                fd = entry.compare_fd
                entry.compare_fd = None
                try:
                    entry.differs = os.read(fd, 1) != b""
                finally:
                    os.close(fd)
            if entry.status == "changed" and not entry.differs:
                entry.status = "same"
            if entry.fd is not None:
                if entry.status == "changed" and entry.old_mode is not None:
                    folder = self._tree.folder(entry.folder_parts, False)
                    assert folder is not None
                    self._tree.chmod(entry.fd, folder, entry.temp or "", entry.old_mode)
                if self.sync:
                    os.fsync(entry.fd)
                fd = entry.fd
                entry.fd = None
                os.close(fd)
            if entry.status == "same":
                self._drop(entry)
        except OSError as exc:
            raise DiskError(f"cannot write {quote(entry.name)}: {_reason(exc)}", entry.line) from None
        if entry.status == "changed" and not self.force:
            self.errors.append(
                ConflictError(
                    f"{quote(entry.name)} exists with other content; use -f to replace it", entry.line
                )
            )

    def _drop(self, entry: Entry) -> None:
        """Close ENTRY's files and remove its temporary file, if any."""
        _close_quietly(entry.fd, entry.compare_fd)
        entry.fd = entry.compare_fd = None
        if entry.temp is not None:
            folder = self._tree.folder(entry.folder_parts, False)
            if folder is not None:
                self._tree.unlink(folder, entry.temp)
            entry.temp = None

    # -- commit and rollback -----------------------------------------------

    def commit(self) -> list[str]:
        """Move every staged file into place; return warnings about leftovers.

        Raises the collected errors instead, if there are any.
        """
        if self.errors:
            raise ErrorList(self.errors)
        if self.dry_run:
            return []
        new_files = sum(entry.status == "new" and entry.temp is not None for entry in self.entries)
        if new_files >= MANY_FILES and self._tree.use_dir_fd:
            self._rename_noreplace = _rename_noreplace()
        guard = self.guard
        guard.hold()  # a rename and its record must not be split by a signal
        try:
            for entry in self.entries:
                if entry.temp is not None:
                    self._place(entry)
                guard.check()  # a signal before the last rename undoes them all
        finally:
            guard.deferring = False
        # Every file is in place: a signal can no longer turn this into failure.
        guard.finished = True
        if self.sync:  # still part of the commit: if it fails, roll back
            try:
                self._sync_folders()
            except (OSError, SplitError) as exc:
                raise DiskError(f"cannot flush the output folder to disk: {_reason(exc)}") from None
        return self._remove_backups()

    def _remove_backups(self) -> list[str]:
        """Drop the second names of replaced files; return what could not be dropped."""
        problems: list[str] = []
        for entry in self.entries:
            backup = entry.backup
            if backup is None:
                continue
            try:
                folder = self._tree.folder(entry.folder_parts, False)
                if folder is not None:
                    self._tree.unlink(folder, backup)
                entry.backup = None
            # Even an interrupt: the run has succeeded, only a leftover remains.
            except CLEANUP_ERRORS as exc:
                shown = "/".join(entry.folder_parts + (backup,))
                problems.append(
                    f"{quote(entry.name)} was replaced, but its old copy {quote(shown)} could not be"
                    f" removed ({_reason(exc)}); delete it by hand"
                )
        return problems

    def _place(self, entry: Entry) -> None:
        """Rename ENTRY's temporary file to its real name, keeping a way back."""
        assert entry.temp is not None
        folder = self._tree.folder(entry.folder_parts, False)
        try:
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "its folder is gone")
            if entry.status == "new":
                self._place_new(entry, folder)
            else:
                self._replace(entry, folder)
        except OSError as exc:
            raise DiskError(f"cannot write {quote(entry.name)}: {_reason(exc)}", entry.line) from None

    def _place_new(self, entry: Entry, folder: Handle) -> None:
        """Give ENTRY's temporary file its name, failing if something took it meanwhile."""
        temp = entry.temp
        assert temp is not None
        tree = self._tree
        try:
            if self._rename_noreplace and isinstance(folder, int):
                try:
                    self._rename_noreplace(folder, temp, entry.leaf)
                    entry.temp = None
                    entry.placed = True
                    return
                except FileExistsError:
                    raise
                except OSError as exc:  # this filesystem cannot: link and unlink from now on
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", -1)):
                        raise
                    self._rename_noreplace = None
            if os.name != "nt":  # on Windows, rename itself refuses to replace
                try:
                    tree.link(folder, temp, entry.leaf)  # unlike rename, never replaces
                    entry.placed = True
                    tree.unlink(folder, temp)
                    entry.temp = None
                    return
                except OSError as exc:
                    if entry.placed or exc.errno not in NO_LINK_ERRNOS:
                        raise
                # No hard links on this filesystem: look, then rename.
                try:
                    tree.lstat(folder, entry.leaf)
                    raise FileExistsError(errno.EEXIST, "File exists")
                except FileNotFoundError:
                    pass
            tree.rename(folder, temp, entry.leaf, replace=False)
            entry.temp = None
            entry.placed = True
        except FileExistsError:
            raise TargetError(
                f"cannot write {quote(entry.name)}: something appeared there during the run", entry.line
            ) from None

    def _replace(self, entry: Entry, folder: Handle) -> None:
        assert entry.temp is not None
        tree = self._tree
        self._serial += 1
        backup = f"{TEMP_PREFIX}{self._token}-{self._serial}.old"
        # Keep a way back: a second name for the old file, so that the
        # replacement below is atomic. A link is moved aside instead, since
        # some systems would give its target the second name.
        moved = entry.old_is_link
        if not moved:
            try:
                tree.link(folder, entry.leaf, backup)
            except OSError as exc:
                if exc.errno not in NO_LINK_ERRNOS:
                    raise
                moved = True
        if moved:
            tree.rename(folder, entry.leaf, backup, replace=False)
        entry.backup = backup
        entry.backup_moved = moved
        tree.rename(folder, entry.temp, entry.leaf, replace=True)
        entry.temp = None
        entry.placed = True

    def rollback(self) -> list[str]:
        """Undo everything this run did below DIR; return what could not be undone."""
        self.guard.hold()  # already failing: a signal now only waits for the end
        problems: list[str] = []
        try:
            for entry in reversed(self.entries):
                self._undo(entry, problems)
            self._tree.remove_created(problems)
            self._tree.close()
            for path in reversed(self._created_roots):
                try:
                    os.rmdir(path)
                except CLEANUP_ERRORS as exc:
                    problems.append(f"could not remove folder {quote(path)}: {_reason(exc)}")
            self._created_roots.clear()
        finally:
            self.guard.deferring = False
        return problems

    def _undo(self, entry: Entry, problems: list[str]) -> None:
        tree = self._tree
        _close_quietly(entry.fd, entry.compare_fd)
        entry.fd = entry.compare_fd = None
        try:
            folder = tree.folder(entry.folder_parts, False)
        except CLEANUP_ERRORS as exc:
            problems.append(f"could not restore {quote(entry.name)}: {_reason(exc)}")
            return
        if folder is None:
            return
        backup = entry.backup
        try:
            if entry.placed and backup is not None:  # put the old file back over ours
                tree.rename(folder, backup, entry.leaf, replace=True)
            elif entry.placed:
                tree.unlink(folder, entry.leaf)
            elif backup is not None and entry.backup_moved:
                tree.rename(folder, backup, entry.leaf, replace=False)
            elif backup is not None:  # a second name only: the old file never left
                tree.unlink(folder, backup)
        except FileNotFoundError:
            pass
        except CLEANUP_ERRORS as exc:
            problems.append(f"could not restore {quote(entry.name)}: {_reason(exc)}")
        entry.backup = None
        entry.placed = False
        if entry.temp is not None:
            try:
                tree.unlink(folder, entry.temp)
            except FileNotFoundError:
                pass
            except CLEANUP_ERRORS as exc:
                problems.append(f"could not remove {quote(entry.temp)}: {_reason(exc)}")
            entry.temp = None

    def _sync_folders(self) -> None:
        """Flush every folder that gained an entry (after --sync)."""
        seen: set[tuple[str, ...]] = set()
        wanted = [e.folder_parts for e in self.entries if e.status != "same"] + [
            parts[:-1] for parts in self._tree.created
        ]
        for parts in wanted:
            if parts not in seen:
                seen.add(parts)
                folder = self._tree.folder(parts, False)
                if folder is not None:
                    self._tree.sync_folder(folder)

    def read_target(self, entry: Entry) -> bytes:
        """Return what ENTRY's target holds now: empty for nothing or a link; links are not followed."""
        folder = self._tree.folder(entry.folder_parts, False) if self._have_root else None
        if folder is None or entry.old_is_link or entry.status == "new":
            return b""
        fd = self._tree.open(folder, entry.leaf, os.O_RDONLY | O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return b""
            chunks: list[bytes] = []
            while True:
                data = os.read(fd, CHUNK_SIZE)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release every descriptor the writer holds."""
        for entry in self.entries:
            _close_quietly(entry.fd, entry.compare_fd)
            entry.fd = entry.compare_fd = None
        self._tree.close()


# ---------------------------------------------------------------------------
# Pack: files to a bundle, the inverse of splitting
# ---------------------------------------------------------------------------


def _pack_name(path: str) -> str:
    """Return the bundle name for PATH as given: '/' between parts, no leading './', no trailing '/'."""
    name = path.replace(os.sep, "/") if os.sep != "/" else path
    while name.startswith("./"):
        name = name[2:].lstrip("/")
    name = name.rstrip("/") if name.strip("/") else name
    return "" if name == "." else name


def _pack_sources(paths: Sequence[str], warn: Callable[[str, str], None]) -> list[tuple[str, str]]:
    """Return (name, path) for every file to bundle: PATHS in order, folders sorted by name bytes."""
    found: list[tuple[str, str]] = []
    for path in paths:
        name = _pack_name(path)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None
        if stat.S_ISDIR(st.st_mode) and name.rsplit("/", 1)[-1].casefold() in VCS_FOLDERS:
            warn(path, "skipped: a version-control folder")
        elif stat.S_ISDIR(st.st_mode):
            inside: list[tuple[str, str]] = []
            _pack_folder(path, name, inside, warn)
            found += sorted(inside, key=lambda item: item[0].encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            found.append((name, path))
        else:
            warn(path, f"skipped: {_describe(st.st_mode)}, not a file")
    return found


def _pack_folder(folder: str, name: str, found: list[tuple[str, str]], warn: Callable[[str, str], None]) -> None:
    """Add the files below FOLDER to FOUND, never following a symlink."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DiskError(f"cannot read {quote(folder)}: {_reason(exc)}") from None
    for entry in entries:
        child = f"{name}/{entry.name}" if name else entry.name
        if entry.is_symlink():
            warn(entry.path, "skipped: a symlink (links are not followed)")
        elif entry.is_dir(follow_symlinks=False):
            if entry.name.casefold() in VCS_FOLDERS:
                warn(entry.path, "skipped: a version-control folder")
            else:
                _pack_folder(entry.path, child, found, warn)
        elif entry.is_file(follow_symlinks=False):
            found.append((child, entry.path))
        else:
            warn(entry.path, "skipped: not a regular file")


def pack(paths: Sequence[str], out: IO[bytes], windows: bool, warn: Callable[[str, str], None]) -> int:
    """Write a bundle of the files at PATHS to OUT; return how many files it holds.

    Files that are not UTF-8 text are skipped and a missing final newline is
    added, each with a call to WARN(path, message). A name that breaks the
    name rules, or a file holding its own close marker, raises ErrorList
    before anything is written to OUT.
    """
    sources = _pack_sources(paths, warn)
    errors: list[SplitError] = []
    index = NameIndex()
    for name, path in sources:
        why = "; ".join(check_name(name, windows)) or index.add(name)
        if why:
            errors.append(InvalidNameError(f"cannot bundle {quote(path)} as {quote(name)}: {why}"))
    if errors:
        raise ErrorList(errors)
    count = 0
    for name, path in sources:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DiskError(f"cannot read {quote(path)}: {_reason(exc)}") from None
        if b"\0" in data:
            warn(path, "skipped: it holds a NUL byte (binary files cannot be bundled)")
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            warn(path, "skipped: it is not UTF-8 text")
            continue
        if data and not data.endswith(b"\n"):
            warn(path, "has no final newline; the bundle adds one")
            data += b"\n"
        raw = name.encode("utf-8")
        close = CLOSE_PREFIX + raw + MARKER_SUFFIX
        if close in data and any(_marker_text(line) == close for line in data.split(b"\n")):
            errors.append(BundleError(f"cannot bundle {quote(path)}: it holds a line equal to its own close marker"))
            continue
        out.write(OPEN_PREFIX + raw + MARKER_SUFFIX + b"\n" + data + close + b"\n")
        count += 1
    if errors:
        raise ErrorList(errors)
    return count


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


class _Reporter:
    """Writes diagnostics and the progress line to stderr.

    Diagnostics read `splitfile: KIND: SOURCE:LINE: message`. The progress
    line appears only on a terminal, after about a second, and is erased
    before any diagnostic and at the end.
    """

    def __init__(self, source: str, quiet: bool, total: int | None = None) -> None:
        self.source = source
        self.quiet = quiet
        self.total = total  # bundle size, when known
        self.read = 0  # bytes read so far
        self.staged = 0  # blocks read so far
        self._shown = 0  # length of the progress line on screen
        self._next = 0.0  # when the progress line may next be drawn
        self._progress = not quiet and _is_terminal(sys.stderr)
        if self._progress:
            import time

            self._clock = time.monotonic
            self._next = self._clock() + 1.0

    def _where(self, line: int | None) -> str:
        return self.source if line is None else f"{self.source}:{line}"

    def _say(self, kind: str, message: str, where: str) -> None:
        self.clear()
        prefix = f"{where}: " if where else ""  # --pack has no bundle to point into
        sys.stderr.write(f"splitfile: {kind}: {prefix}{message}\n")
        sys.stderr.flush()

    def error(self, exc: SplitError) -> None:
        """Report EXC, and each error it holds."""
        for each in exc.errors if isinstance(exc, ErrorList) else [exc]:
            self._say("error", each.message, self._where(each.line))

    def warning(self, message: str, line: int | None = None, where: str | None = None) -> None:
        """Report a warning unless -q was given."""
        if not self.quiet:
            self._say("warning", message, where or self._where(line))

    def advance(self, size: int) -> None:
        """Count SIZE more bytes read; redraw the progress line a few times a second."""
        self.read += size
        if self._progress and self._clock() >= self._next:
            self._next = self._clock() + 0.25
            of = f" of {_size(self.total)}" if self.total else ""
            text = f"splitfile: {_size(self.read)}{of} read, {self.staged} files staged"
            sys.stderr.write("\r" + text.ljust(self._shown))
            sys.stderr.flush()
            self._shown = len(text)

    def clear(self) -> None:
        """Erase the progress line, if one is shown."""
        if self._shown:
            sys.stderr.write("\r" + " " * self._shown + "\r")
            sys.stderr.flush()
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


def _walk(events: Iterable[Event], windows: bool, reporter: _Reporter, consumer: _Consumer) -> None:
    """Check every name and hand each valid block's body to CONSUMER; warn through REPORTER as lines pass.

    Raises every error of the run at once, in line order: bad names, near
    misses that would lose a file and, when anything else fails, the target
    problems CONSUMER collected (its `errors`: conflicts, a folder at a
    target); the structure error that ended the parse, if any, comes last.
    """
    index = NameIndex()
    errors: list[SplitError] = []
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
                    errors.append(InvalidNameError(f"invalid name {quote(name)}: {why}", event.line))
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
                    reporter.warning(f"{shown} looks like a marker but is not one, so it was ignored: {event.why}",
                                     event.line)
            elif type(event) is Fenced and opened is not None:
                first, last = opened.line + 1, event.line - 1
                reporter.warning(
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
        if not found:
            raise structure
        found.append(structure)
    raise ErrorList(found)


class _Collector:
    """A consumer that writes no file: it keeps the names, and the bodies asked for."""

    def __init__(self, wanted: Iterable[str] = (), writer: Writer | None = None) -> None:
        self.names: list[str] = []
        self.wanted = set(wanted)
        self.bodies: dict[str, IO[bytes]] = {}
        self.writer = writer  # with --diff, a dry-run writer that looks at each target

    def add(self, name: str, origin: Origin) -> Entry | None:
        self.names.append(name)
        entry = self.writer.add(name, origin) if self.writer else Entry(name, origin)
        if entry is not None and (self.writer or name in self.wanted):
            import tempfile

            self.bodies[name] = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        return entry

    def write(self, entry: Entry, data: Buffer | memoryview) -> None:
        if self.writer:
            self.writer.write(entry, data)
        body = self.bodies.get(entry.name)
        if body is not None:
            body.write(data)

    def end(self, entry: Entry) -> None:
        if self.writer:
            self.writer.end(entry)

    def body(self, name: str) -> bytes:
        """Return the whole body of NAME."""
        stream = self.bodies[name]
        stream.seek(0)
        return stream.read()

    def close(self) -> None:
        """Drop the kept bodies."""
        for stream in self.bodies.values():
            stream.close()
        if self.writer:
            self.writer.close()


if TYPE_CHECKING:
    import argparse

    _Consumer = Union[Writer, _Collector]


def _write_stdout(data: bytes) -> None:
    """Write DATA to stdout as bytes, whatever stdout is."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        sys.stdout.write(data.decode("utf-8", "surrogateescape"))
        sys.stdout.flush()


def _print_lines(lines: Iterable[str]) -> None:
    """Print LINES to stdout as UTF-8, one a line."""
    _write_stdout("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))


def _read_chunks(stream: IO[bytes], reporter: _Reporter) -> Iterator[bytes]:
    """Yield the bundle in chunks as they arrive (a pipe is not waited on to fill)."""
    _widen_pipe(stream)
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            data = read(CHUNK_SIZE)
        except OSError as exc:
            raise DiskError(f"cannot read the bundle: {_reason(exc)}") from None
        if not data:
            return
        reporter.advance(len(data))
        yield data


def _widen_pipe(stream: IO[bytes]) -> None:
    """Let a pipe on STREAM hold a whole chunk (Linux), so that each read returns more than 64 KiB."""
    try:
        if not stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode):
            return
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK_SIZE)
    except (OSError, ValueError, AttributeError, ImportError):  # no such pipe, or a system without it
        pass


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
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


def _open_bundle(args: argparse.Namespace) -> tuple[str, IO[bytes], int | None]:
    """Return the bundle's name for messages, a binary stream, and its size if it is a file."""
    if args.bundle in (None, "-"):
        stdin = sys.stdin
        if stdin is None:
            raise UsageError("no bundle given and no standard input; name a bundle file")
        if args.bundle is None and _is_terminal(stdin):
            raise UsageError(
                "no bundle given and standard input is a terminal;"
                " name a bundle file, or pipe one in (see --help)"
            )
        stream: IO[bytes] = stdin.buffer
        return "<stdin>", stream, None
    try:
        stream = open(args.bundle, "rb", buffering=0)
    except OSError as exc:
        raise DiskError(f"cannot read the bundle: {_reason(exc)}") from None
    try:
        st = os.fstat(stream.fileno())
    except OSError:
        return args.bundle, stream, None
    except BaseException:
        stream.close()
        raise
    return args.bundle, stream, st.st_size if stat.S_ISREG(st.st_mode) else None


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


def _split(args: argparse.Namespace, reporter: _Reporter, stream: IO[bytes], guard: SignalGuard) -> int:
    """Run the chosen mode over the bundle; return the exit status."""
    windows = args.portable or os.name == "nt"
    # A bundle file can be read again, so lines need counting only for messages.
    reread = _rereader(args.bundle) if reporter.total is not None else None
    events = parse(_read_chunks(stream, reporter), reread)
    if args.list or args.print_names or args.diff:
        return _inspect(args, reporter, events, windows)
    writer = Writer(args.output, force=args.force, dry_run=args.dry_run, sync=args.sync, guard=guard)
    checked = False
    try:
        _walk(events, windows, reporter, writer)
        checked = True
        leftovers = writer.commit()
    except BaseException as exc:
        for problem in writer.rollback():
            reporter.error(DiskError(problem))
        if isinstance(exc, SplitError) and checked and args.dry_run:
            reporter.clear()
            _print_lines(f"{e.status} {e.name}" for e in writer.entries)
        raise
    finally:
        writer.close()
    reporter.clear()
    for problem in leftovers:
        reporter.warning(problem)
    if args.verbose or args.dry_run:
        _print_lines(f"{e.status} {e.name}" for e in writer.entries)
    return EXIT_OK


def _inspect(args: argparse.Namespace, reporter: _Reporter, events: Iterable[Event], windows: bool) -> int:
    """Run -l, -p or --diff: read the whole bundle, check it, print; write no file."""
    writer = Writer(args.output, force=True, dry_run=True) if args.diff else None
    collector = _Collector(args.print_names or (), writer)
    try:
        _walk(events, windows, reporter, collector)
        if writer and writer.errors:
            raise ErrorList(writer.errors)
        reporter.clear()
        if args.list:
            _print_lines(collector.names)
        elif args.print_names:
            missing = [name for name in args.print_names if name not in collector.bodies]
            if missing:
                raise ErrorList([SplitError(f"the bundle has no block named {quote(name)}") for name in missing])
            for name in args.print_names:
                _write_stdout(collector.body(name))
        elif writer:
            for entry in writer.entries:
                if entry.status != "same":
                    try:
                        old = writer.read_target(entry)
                    except OSError as exc:
                        raise DiskError(f"cannot read {quote(entry.name)}: {_reason(exc)}", entry.line) from None
                    _write_stdout(_diff(entry, old, collector.body(entry.name)))
    finally:
        collector.close()
    return EXIT_OK


def _diff(entry: Entry, old: bytes, new: bytes) -> bytes:
    """Return a unified diff from OLD to NEW for ENTRY (a new file's OLD is /dev/null)."""
    import difflib

    name = entry.name
    before = "/dev/null" if entry.status == "new" else f"a/{name}"
    try:
        old_lines = _diff_lines(old.decode("utf-8"))
        new_lines = _diff_lines(new.decode("utf-8"))
    except UnicodeDecodeError:
        return f"Binary files {before} and b/{name} differ\n".encode("utf-8", "surrogateescape")
    lines = difflib.unified_diff(old_lines, new_lines, before, f"b/{name}")
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    if not text:  # a file of the same text under a link, say: still show that it changes
        text = f"--- {before}\n+++ b/{name}\n"
    return text.encode("utf-8", "surrogateescape")


def _diff_lines(text: str) -> list[str]:
    """Split TEXT after each LF only (str.splitlines also splits at CR, form feeds and more)."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


def _pack(args: argparse.Namespace, reporter: _Reporter) -> int:
    """Run --pack: write the bundle to stdout only if every file could be bundled."""
    import tempfile

    windows = args.portable or os.name == "nt"
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as staged:
        pack(args.pack, staged, windows, lambda path, message: reporter.warning(f"{quote(path)}: {message}"))
        staged.seek(0)
        while True:
            data = staged.read(CHUNK_SIZE)
            if not data:
                break
            _write_stdout(data)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run splitfile with ARGV (default: sys.argv[1:]); return the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.pack and args.bundle is not None:
        parser.print_usage(sys.stderr)
        sys.stderr.write("splitfile: error: --pack takes paths to bundle, not a BUNDLE to split\n")
        return EXIT_USAGE
    source = "" if args.pack else "<stdin>" if args.bundle in (None, "-") else args.bundle
    reporter = _Reporter(source, args.quiet)
    stream = None
    try:
        with SignalGuard() as guard:
            try:
                if args.pack:
                    return _pack(args, reporter)
                source, stream, reporter.total = _open_bundle(args)
                return _split(args, reporter, stream, guard)
            except SplitError as exc:
                reporter.clear()
                if isinstance(exc, UsageError):
                    sys.stderr.write(f"splitfile: error: {exc.message}\n")
                else:
                    reporter.error(exc)
                return exc.exit_status
            except (Interrupted, KeyboardInterrupt) as exc:
                reporter.clear()
                sys.stderr.write("splitfile: error: interrupted; nothing was written\n")
                return 128 + (exc.signum if isinstance(exc, Interrupted) else 2)
            except BrokenPipeError:
                # The reader of stdout went away; say nothing more there.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                return EXIT_FAILURE
            except OSError as exc:  # a failing disk that no layer above named: still no traceback
                reporter.error(DiskError(_reason(exc)))
                return EXIT_FAILURE
    finally:
        if stream is not None and stream is not getattr(sys.stdin, "buffer", None):
            stream.close()


if __name__ == "__main__":
    sys.exit(main())
