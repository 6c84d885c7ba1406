"""--pack on hostile trees and pack() as a function; format(), the pure inverse of reading (SPEC 6, 7)."""

from __future__ import annotations

import faulthandler
import io
import os
import pathlib
import random
import unittest
from unittest import mock

from tests.helpers import TempDirTest, bundle, make_tree, run, splitfile


def read_back(data: bytes) -> list[tuple[str, bytes]]:
    """Return the (name, body) pairs of the bundle DATA, as the parser sees them."""
    files: list[tuple[str, bytes]] = []
    for event in splitfile.parse([data]):
        if isinstance(event, splitfile.Open):
            files.append((event.name, b""))
        elif isinstance(event, splitfile.Body):
            name, body = files[-1]
            files[-1] = (name, body + bytes(event.data))
    return files


class HostileTreeTest(TempDirTest):
    def setUp(self) -> None:
        super().setUp()
        faulthandler.dump_traceback_later(60, exit=True)  # a hang (a FIFO read) must fail, not stall the suite
        self.addCleanup(faulthandler.cancel_dump_traceback_later)

    def test_a_tree_deeper_than_the_recursion_limit_is_packed(self) -> None:
        self.addCleanup(self.remove_deep, os.path.join(self.tmp, "t"), 1100)
        os.mkdir("t")
        os.chdir("t")
        for _ in range(1100):
            os.mkdir("d")
            os.chdir("d")
        with open("f.txt", "wb") as f:
            f.write(b"deep\n")
        os.chdir(self.tmp)
        result = run(["--pack", "t"])
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual(result.out, bundle(("t/" + "d/" * 1100 + "f.txt", b"deep\n")))

    @staticmethod
    def remove_deep(top: str, depth: int) -> None:
        """Remove the chain TOP/d/d/... DEPTH deep (shutil.rmtree recurses and fails there)."""
        old = os.getcwd()
        os.chdir(top)
        for _ in range(depth):
            os.chdir("d")
        for name in os.listdir("."):
            os.remove(name)
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
        os.chdir(old)

    def swap_after_scan(self, swap: object) -> splitfile.Result:  # type: ignore[name-defined]
        real = splitfile._pack_sources

        def scan_then_swap(*args: object, **kw: object) -> object:
            found = real(*args, **kw)  # type: ignore[arg-type]
            swap()  # type: ignore[operator]
            return found

        with mock.patch.object(splitfile, "_pack_sources", scan_then_swap):
            return run(["--pack", "p"])

    def test_a_file_swapped_after_the_scan_is_never_read(self) -> None:
        make_tree(self.tmp, {"p/a.txt": b"a\n", "p/b.txt": b"b\n", "secret": b"SECRET\n"})
        secret = os.path.join(self.tmp, "secret")
        target = os.path.join("p", "b.txt")

        def to_link() -> None:
            os.remove(target)
            os.symlink(secret, target)

        def to_fifo() -> None:
            os.remove(target)
            os.mkfifo(target)

        def to_other_file() -> None:  # made before the old one goes, so that it cannot reuse its inode
            make_tree(self.tmp, {"other": b"SECRET\n"})
            os.replace("other", target)

        def removed() -> None:
            os.remove(target)

        for swap in (to_link, to_fifo, to_other_file, removed):
            with self.subTest(swap=swap.__name__):
                if os.path.lexists(target):
                    os.remove(target)
                make_tree(self.tmp, {target: b"b\n"})
                result = self.swap_after_scan(swap)
                self.assertEqual((result.code, result.out), (1, b""))
                self.assertEqual(result.err, "splitfile: error: cannot read 'p/b.txt': it changed while the tree"
                                             " was being packed; run --pack again\n")

    def test_a_folder_swapped_for_a_link_during_the_walk_is_not_listed(self) -> None:
        make_tree(self.tmp, {"p/sub/a.txt": b"a\n", "outside/secret.txt": b"SECRET\n"})
        real = splitfile._list_folder

        swaps = {
            "link": lambda: os.symlink(os.path.join(self.tmp, "outside"), os.path.join("p", "sub")),
            "file": lambda: make_tree(self.tmp, {"p/sub": b"x\n"}),
            "nothing": lambda: None,
        }
        for kind, swap in swaps.items():
            def list_then_swap(tree: object, top: object, parts: tuple[str, ...], expected: object) -> object:
                found = real(tree, top, parts, expected)
                if parts == ():
                    os.rename(os.path.join("p", "sub"), "moved")
                    swap()  # noqa: B023 - called within this iteration
                return found

            with self.subTest(kind=kind), mock.patch.object(splitfile, "_list_folder", list_then_swap):
                result = run(["--pack", "p"])
                self.assertEqual((result.code, result.out), (1, b""))
                self.assertEqual(result.err, "splitfile: error: cannot read 'p/sub': it changed while the tree was"
                                             " being packed; run --pack again\n")
            if os.path.lexists(os.path.join("p", "sub")):
                os.remove(os.path.join("p", "sub"))
            os.rename("moved", os.path.join("p", "sub"))

    @unittest.skipUnless(splitfile.HAVE_DIR_FD, "needs dir_fd: without it a folder is a path, as with tar")
    def test_a_folder_swapped_for_a_link_after_the_scan_is_not_opened_through(self) -> None:
        make_tree(self.tmp, {"p/sub/victim.txt": b"v\n", "outside/victim.txt": b"SECRET\n"})
        real_open = os.open
        through_links: list[str] = []

        def watching_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs.get("dir_fd") is None and isinstance(path, str):
                head = os.path.dirname(path)
                while head not in ("", os.sep):  # a link on the way: the open would go through it
                    if os.path.islink(head):
                        through_links.append(path)
                    head = os.path.dirname(head)
            return real_open(path, flags, *args, **kwargs)

        def to_link() -> None:
            os.rename(os.path.join("p", "sub"), "moved")
            os.symlink(os.path.join("..", "outside"), os.path.join("p", "sub"))

        with mock.patch.object(os, "open", watching_open):
            result = self.swap_after_scan(to_link)
        self.assertEqual((result.code, result.out), (1, b""))
        self.assertEqual(result.err, "splitfile: error: cannot read 'p/sub': it changed while the tree was"
                                     " being packed; run --pack again\n")
        self.assertEqual(through_links, [])

    def test_a_name_of_4096_bytes_is_packed_whatever_the_path_length(self) -> None:
        # The path from here is longer than PATH_MAX; each open names one part.
        if not (splitfile.HAVE_DIR_FD and os.scandir in os.supports_fd):
            self.skipTest("without descriptors for folders, paths are as long as the names, as with tar")
        name = "p/" + ("d" * 254 + "/") * 15 + "e" * 13 + "/" + "f" * 255
        self.assertEqual(len(name), 4096)
        self.assertEqual(splitfile.extract(bundle((name, b"deep\n")), self.tmp)[0].status, "new")
        self.addCleanup(self.remove_long, name)
        result = run(["--pack", "p"])
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual(result.out, bundle((name, b"deep\n")))

    def remove_long(self, name: str) -> None:
        """Remove the file NAME and its folders below the test folder, one part at a time."""
        old = os.getcwd()
        parts = name.split("/")
        os.chdir(self.tmp)
        for part in parts[:-1]:
            os.chdir(part)
        os.remove(parts[-1])
        for part in reversed(parts[:-1]):
            os.chdir("..")
            os.rmdir(part)
        os.chdir(old)

    def test_files_stream_through_the_checks_in_chunks_of_any_size(self) -> None:
        files = {
            "ok.txt": b"caf\xc3\xa9 \xe2\x82\xac\n<<<END other>>>\n<<<END p/ok.txt>>>x\n",
            "crlf.txt": b"a\r\n<<<END p/crlf.txt>>>\r\nb\n",
            "lf.txt": b"a\n<<<END p/lf.txt>>>\n",
            "last.txt": b"a\n<<<END p/last.txt>>>",
            "lastcr.txt": b"a\n<<<END p/lastcr.txt>>>\r",
            "nonl.txt": b"a\nno newline",
            "nul.txt": b"a" * 30 + b"\0\n",
            "latin.txt": b"a" * 29 + b"caf\xe9\n",
            "cut.txt": b"ends inside a character \xe2\x82",
            "long.txt": b"x" * 50 + b"<<<END p/long.txt>>>\n",
        }
        make_tree(self.tmp, {"p/" + name: data for name, data in files.items()})
        for size in (1, 2, 3, 7, 17, 1 << 18):
            with self.subTest(chunk=size), mock.patch.object(splitfile, "CHUNK_SIZE", size):
                warnings: list[str] = []
                out = io.BytesIO()
                with self.assertRaises(splitfile.ErrorList) as caught:
                    splitfile.pack(["p"], out, on_warning=lambda warning: warnings.append(warning.message))
                self.assertEqual(out.getvalue(), b"")
                self.assertEqual([e.message for e in caught.exception.errors], [
                    f"cannot bundle 'p/{name}': it holds a line equal to its own close marker"
                    for name in ("crlf.txt", "last.txt", "lastcr.txt", "lf.txt")])
                self.assertEqual(sorted(warnings), [
                    "'p/cut.txt': skipped: it is not UTF-8 text",
                    "'p/last.txt': has no final newline; the bundle adds one",
                    "'p/lastcr.txt': has no final newline; the bundle adds one",
                    "'p/latin.txt': skipped: it is not UTF-8 text",
                    "'p/nonl.txt': has no final newline; the bundle adds one",
                    "'p/nul.txt': skipped: it holds a NUL byte (binary files cannot be bundled)",
                ])
                for bad in ("crlf.txt", "last.txt", "lastcr.txt", "lf.txt"):
                    os.rename(os.path.join("p", bad), os.path.join(self.tmp, bad))
                try:
                    names = splitfile.pack(["p"], out, on_warning=lambda warning: None)
                finally:
                    for bad in ("crlf.txt", "last.txt", "lastcr.txt", "lf.txt"):
                        os.rename(os.path.join(self.tmp, bad), os.path.join("p", bad))
                self.assertEqual(names, ["p/long.txt", "p/nonl.txt", "p/ok.txt"])
                self.assertEqual(out.getvalue(), bundle(("p/long.txt", files["long.txt"]),
                                                        ("p/nonl.txt", files["nonl.txt"] + b"\n"),
                                                        ("p/ok.txt", files["ok.txt"])))

    def test_pack_as_a_function_returns_the_names_and_passes_warnings(self) -> None:
        make_tree(self.tmp, {"p/b.txt": b"b\n", "p/a.txt": b"a", "top.txt": b"t\n"})
        out = io.BytesIO()
        warnings: list[tuple[str, int | None]] = []
        names = splitfile.pack(["top.txt", "p"], out, on_warning=lambda w: warnings.append((w.message, w.line)))
        self.assertEqual(names, ["top.txt", "p/a.txt", "p/b.txt"])
        self.assertEqual(out.getvalue(), bundle(("top.txt", b"t\n"), ("p/a.txt", b"a\n"), ("p/b.txt", b"b\n")))
        self.assertEqual(warnings, [("'p/a.txt': has no final newline; the bundle adds one", None)])
        self.assertEqual(splitfile.pack(["p"], io.BytesIO()), ["p/a.txt", "p/b.txt"])  # no callback: no warnings
        self.assertEqual(splitfile.pack(iter([pathlib.Path("p")]), io.BytesIO()), ["p/a.txt", "p/b.txt"])
        before = out.getvalue()
        with self.assertRaises(splitfile.InvalidNameError) as caught:
            splitfile.pack(["p/a.txt", "./p/a.txt"], out)
        self.assertIn("appears twice", caught.exception.message)
        self.assertEqual(out.getvalue(), before)  # nothing more written
    def test_portable_applies_the_windows_rules(self) -> None:
        make_tree(self.tmp, {"p/aux.txt": b"a\n"})
        self.assertEqual(len(splitfile.pack(["p"], io.BytesIO())), 1 if os.name != "nt" else 0)
        with self.assertRaises(splitfile.InvalidNameError) as caught:
            splitfile.pack(["p"], io.BytesIO(), portable=True)
        self.assertIn("reserved device name", caught.exception.message)


class WithoutScandirFdTest(HostileTreeTest):
    """The same walk where scandir cannot take a descriptor: folders are opened as descriptors, listed by path."""

    def setUp(self) -> None:
        super().setUp()
        patcher = mock.patch.object(os, "supports_fd", os.supports_fd - {os.scandir})
        patcher.start()
        self.addCleanup(patcher.stop)


class WithoutDirFdTest(HostileTreeTest):
    """The same walk without dir_fd (Windows): folders are paths, each checked with lstat before use."""

    def setUp(self) -> None:
        super().setUp()
        patcher = mock.patch.object(splitfile, "HAVE_DIR_FD", False)
        patcher.start()
        self.addCleanup(patcher.stop)


class PackCliTest(TempDirTest):
    def test_out_of_memory_is_an_error_line(self) -> None:
        make_tree(self.tmp, {"a.txt": b"a\n"})
        with mock.patch.object(splitfile, "_format_file", side_effect=MemoryError):
            result = run(["--pack", "a.txt"])
        self.assertEqual((result.code, result.out), (1, b""))
        self.assertEqual(result.err, "splitfile: error: out of memory; nothing was written"
                                     " (free some memory and run again)\n")


class FormatTest(unittest.TestCase):
    def test_format_gives_a_bundle_the_parser_reads_back(self) -> None:
        files = [("a.txt", b"one\n"), ("dir/b.md", b""), ("c", b"<<<FILE x>>>\n<<<END x>>>\n<<<END c>>> \r\n")]
        data = splitfile.format(files)
        self.assertEqual(data, bundle(*files))
        self.assertEqual(read_back(data), files)
        with self.assertRaises(splitfile.BundleError):  # reading would refuse it: no block
            splitfile.format([])

    def test_random_files_round_trip(self) -> None:
        rng = random.Random(20261202)
        parts = ["a", "src", "Doc", "é", "日本", "x.py", "data-1", "year=2024", "a b", "<<<END", ">>>"]
        pieces = [b"text\n", b"\r\n", b"\n", b"  indented\t\n", b"caf\xc3\xa9\n", b"<<<FILE a>>>\n",
                  b"<<<END src>>>\n", b"<<<END\n", b">>>\n", b"\xf0\x9f\x98\x80 emoji\n", b"no newline here"]
        for case in range(300):
            names: dict[str, None] = {}
            for _ in range(rng.randrange(1, 6)):
                name = "/".join(rng.choice(parts) for _ in range(rng.randrange(1, 4)))
                if not splitfile.check_name(name) and not any(
                        splitfile.name_key(name)[:len(splitfile.name_key(other))] == splitfile.name_key(other)
                        or splitfile.name_key(other)[:len(splitfile.name_key(name))] == splitfile.name_key(name)
                        for other in names):
                    names[name] = None
            files = []
            for name in names:
                body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8)))
                if body and not body.endswith(b"\n"):
                    body += b"\n"
                close = b"<<<END " + name.encode() + b">>>"
                if close + b"\n" in b"\n" + body or close + b"\r\n" in b"\n" + body:
                    continue
                files.append((name, body))
            with self.subTest(case=case, files=files):
                self.assertEqual(read_back(splitfile.format(files)) if files else [], files)

    def test_format_refuses_what_a_bundle_cannot_carry(self) -> None:
        cases = [
            ([("../a", b"x\n")], splitfile.InvalidNameError, "invalid name '../a': it has a '..' part"),
            ([("a", b"x\n"), ("A", b"y\n")], splitfile.InvalidNameError, "differ only in case"),
            ([("a", b"x\n"), ("a/b", b"y\n")], splitfile.InvalidNameError, "needs 'a' as a folder"),
            ([("a", b"x\n<<<END a>>>\n")], splitfile.BundleError, "it holds a line equal to its own close marker"),
            ([("a", b"x\n<<<END a>>>\r\n")], splitfile.BundleError, "its own close marker"),
            ([("a", b"x")], splitfile.BundleError, "it does not end with a newline"),
            ([("a", b"x\0\n")], splitfile.BundleError, "it holds a NUL byte"),
            ([("a", b"caf\xe9\n")], splitfile.BundleError, "it is not UTF-8 text"),
            ([("nul.txt", b"x\n")], None, ""),
        ]
        for files, kind, words in cases:
            with self.subTest(files=files):
                if kind is None:
                    self.assertEqual(read_back(splitfile.format(files)), files)
                    with self.assertRaises(splitfile.InvalidNameError):
                        splitfile.format(files, portable=True)
                    continue
                with self.assertRaises(kind) as caught:
                    splitfile.format(files)
                self.assertIn(words, caught.exception.message)

    def test_several_problems_raise_one_error_list_holding_all(self) -> None:
        with self.assertRaises(splitfile.ErrorList) as caught:
            splitfile.format([("ok", b"1\n"), ("/abs", b"2\n"), ("b", b"3"), ("c", b"\xff\n")])
        self.assertEqual([type(e) for e in caught.exception.errors],
                         [splitfile.InvalidNameError, splitfile.BundleError, splitfile.BundleError])
        self.assertEqual([e.message for e in caught.exception.errors], [
            "invalid name '/abs': it starts with '/' (names are relative to the output folder)",
            "cannot format 'b': it does not end with a newline, which a bundle cannot express (add one)",
            "cannot format 'c': it is not UTF-8 text",
        ])

    def test_pack_and_format_give_the_same_bytes(self) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            files = [("k/a.txt", b"a\r\nb\n"), ("k/b.txt", b""), ("k/c.txt", b"<<<END k/a.txt>>>\n")]
            make_tree(tmp, dict(files))
            old = os.getcwd()
            os.chdir(tmp)
            try:
                out = io.BytesIO()
                splitfile.pack(["k"], out)
            finally:
                os.chdir(old)
        self.assertEqual(out.getvalue(), splitfile.format(files))


if __name__ == "__main__":
    unittest.main()


class PackEdgeTest(TempDirTest):
    """Edges an outside probe found: a link named with a trailing slash, a worktree's .git file, an empty
    pack, and files that grow or shrink while they are read."""

    def test_a_link_named_with_a_trailing_slash_is_not_followed(self) -> None:
        make_tree(self.tmp, {"real/a.txt": b"a\n"})
        os.symlink("real", os.path.join(self.tmp, "link"))
        result = run(["--pack", "link/", "real"])
        self.assertEqual((result.code, result.out), (0, bundle(("real/a.txt", b"a\n"))))
        self.assertEqual(result.err, "splitfile: warning: 'link': skipped: a symlink, not a file\n")

    def test_a_worktrees_git_file_is_skipped_like_a_git_folder(self) -> None:
        make_tree(self.tmp, {"w/.git": b"gitdir: /elsewhere\n", "w/a.txt": b"a\n"})
        result = run(["--pack", "w"])
        self.assertEqual((result.code, result.out), (0, bundle(("w/a.txt", b"a\n"))))
        self.assertEqual(result.err, "splitfile: warning: 'w/.git': skipped: a version-control file\n")

    def test_nothing_to_bundle_is_an_error_not_an_empty_bundle(self) -> None:
        os.makedirs(os.path.join(self.tmp, "empty"))
        make_tree(self.tmp, {"bin/x": b"\0\n"})
        for paths in (["empty"], ["bin"]):
            with self.subTest(paths=paths):
                result = run(["--pack", *paths])
                self.assertEqual((result.code, result.out), (1, b""))
                self.assertIn("splitfile: error: nothing to bundle: no file under the paths given could be bundled\n",
                              result.err)

    def test_a_file_that_grows_or_shrinks_while_read_is_an_error(self) -> None:
        real_read = os.read
        for change in ("grow", "shrink"):
            with self.subTest(change=change):
                make_tree(self.tmp, {"p/a.txt": b"a\n" * 1000})
                done = []

                def reading(fd: int, size: int) -> bytes:
                    if not done:
                        done.append(True)
                        with open(os.path.join(self.tmp, "p", "a.txt"), "r+b") as f:
                            if change == "grow":
                                f.seek(0, 2)
                                f.write(b"more\n")
                            else:
                                f.truncate(10)
                    return real_read(fd, size)

                out = io.BytesIO()
                with mock.patch("os.read", reading), self.assertRaises(splitfile.DiskError) as caught:
                    splitfile.pack(["p"], out)
                self.assertIn("it changed while the tree was being packed", caught.exception.message)
                self.assertEqual(out.getvalue(), b"")
