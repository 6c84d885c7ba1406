"""The command line (SPEC 4) and writing (SPEC 3), through main() in-process."""

from __future__ import annotations

import os
import stat
import unittest
from unittest import mock

from tests.helpers import ForceNoDirFd, TempDirTest, bundle, files_of, leftovers, make_tree, run, snapshot, splitfile

TODO = os.path.join(os.path.dirname(splitfile.__file__), "examples", "todo-app.txt")

# bundle -> the tree it makes in an empty folder
TREES = [
    ("one file", bundle(("a.txt", b"hello\n")), {"a.txt": b"hello\n"}),
    ("nested folders", bundle(("src/pkg/mod.py", b"x = 1\n"), ("src/main.py", b"")),
     {"src/pkg/mod.py": b"x = 1\n", "src/main.py": b""}),
    ("CRLF bundle keeps CRLF bodies", b"<<<FILE w.bat>>>\r\n@echo off\r\n<<<END w.bat>>>\r\n",
     {"w.bat": b"@echo off\r\n"}),
    ("chat prose, fences and a BOM around", b"\xef\xbb\xbfSure!\n```\n" + bundle(("x", b"1\n")) + b"```\nEnjoy.",
     {"x": b"1\n"}),
    ("a bundle carrying a bundle", bundle(("inner.txt", bundle(("y", b"2\n")))),
     {"inner.txt": bundle(("y", b"2\n"))}),
    ("non-UTF-8 body bytes are kept", bundle(("bin", b"\xff\x00\xfe\r\n")), {"bin": b"\xff\x00\xfe\r\n"}),
    ("unicode names", bundle(("caf\u00e9/\u65e5\u672c.txt", b"ok\n")), {"caf\u00e9/\u65e5\u672c.txt": b"ok\n"}),
    ("dotfiles that are not VCS folders", bundle((".gitignore", b"*.pyc\n"), (".github/ci.yml", b"on: push\n")),
     {".gitignore": b"*.pyc\n", ".github/ci.yml": b"on: push\n"}),
]


class TreeTableTest(TempDirTest):
    def test_bundles_make_exactly_these_trees(self) -> None:
        for title, data, tree in TREES:
            with self.subTest(title):
                dest = os.path.join(self.tmp, title.replace(" ", "_"))
                result = run([self.write_bundle(data), "-o", dest])
                self.assertEqual((result.code, result.out, result.err), (0, b"", ""))
                self.assertEqual(files_of(dest), {k.replace("/", os.sep): v for k, v in tree.items()})

    def test_the_shipped_example_splits(self) -> None:
        result = run([TODO, "-o", self.dest, "-v"])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(
            result.out.decode().splitlines(),
            ["new todo/__init__.py", "new todo/store.py", "new todo/__main__.py", "new tests/test_store.py",
             "new README.md"],
        )
        self.assertIn(b"def load(", files_of(self.dest)["todo/store.py"])


# bundle -> exact stderr lines (SOURCE is bundle.txt); nothing written, exit 1
ERRORS = [
    ("unclosed block", b"<<<FILE a>>>\nx\n",
     ["splitfile: error: bundle.txt:1: block 'a' is never closed: no '<<<END a>>>' line follows"]),
    ("unclosed block with a likely cause", b"<<<FILE a>>>\nx\n<<<FILE b>>>\ny\n",
     ["splitfile: error: bundle.txt:1: block 'a' is never closed: no '<<<END a>>>' line follows; "
      "line 3 starts another block: is the END line above it missing? write '<<<END a>>>' before it"]),
    ("stray close", b"hi\n<<<END a>>>\n",
     ["splitfile: error: bundle.txt:2: '<<<END a>>>' closes no open block; is the <<<FILE line above it mistyped?"]),
    ("no block", b"I can't do that.\n",
     ["splitfile: error: bundle.txt: no '<<<FILE name>>>' block found; nothing to write"]),
    ("traversal", bundle(("../evil", b"x\n")),
     ["splitfile: error: bundle.txt:1: invalid name '../evil': it has a '..' part"]),
    ("absolute", bundle(("/etc/x", b"x\n")),
     ["splitfile: error: bundle.txt:1: invalid name '/etc/x': it starts with '/' (names are relative to the output folder)"]),
    ("escape sequence is shown escaped", bundle(("a\x1b]0;pwned\x07", b"")),
     ["splitfile: error: bundle.txt:1: invalid name 'a\\x1b]0;pwned\\x07': it holds a control character (U+001B); "
      "it holds a control character (U+0007)"]),
    ("all bad names are reported", bundle(("ok", b""), (".git/hooks/post-checkout", b"x\n"), ("a\\b", b"")),
     ["splitfile: error: bundle.txt:3: invalid name '.git/hooks/post-checkout': part '.git' is a version-control folder",
      "splitfile: error: bundle.txt:6: invalid name 'a\\\\b': it holds a backslash (use '/' between parts)"]),
    ("case collision", bundle(("Readme", b""), ("README", b"")),
     ["splitfile: error: bundle.txt:3: invalid name 'README': 'README' and 'Readme' (line 1) differ only in case or "
      "Unicode form; they would overwrite each other on macOS and Windows"]),
    ("duplicate", bundle(("a", b"1\n"), ("a", b"2\n")),
     ["splitfile: error: bundle.txt:4: invalid name 'a': 'a' appears twice; the first block is at line 1"]),
    ("duplicate in a folder an earlier block made", bundle(("d/x", b""), ("d/a", b"1\n"), ("d/a", b"2\n")),
     ["splitfile: error: bundle.txt:6: invalid name 'd/a': 'd/a' appears twice; the first block is at line 3"]),
    ("case collision in a folder an earlier block made", bundle(("d/x", b""), ("d/a", b""), ("D/A", b"")),
     ["splitfile: error: bundle.txt:5: invalid name 'D/A': 'D/A' and 'd/a' (line 3) differ only in case or "
      "Unicode form; they would overwrite each other on macOS and Windows"]),
    ("file and folder", bundle(("a", b""), ("a/b", b"")),
     ["splitfile: error: bundle.txt:3: invalid name 'a/b': 'a/b' needs 'a' (line 1) as a folder, but it is a file"]),
    ("name errors come with the structure error", bundle(("../x", b"")) + b"<<<FILE y>>>\n",
     ["splitfile: error: bundle.txt:1: invalid name '../x': it has a '..' part",
      "splitfile: error: bundle.txt:3: block 'y' is never closed: no '<<<END y>>>' line follows"]),
    ("UTF-16", "<<<FILE a>>>\n<<<END a>>>\n".encode("utf-16"),
     ["splitfile: error: bundle.txt:1: the bundle is UTF-16 text; convert it to UTF-8 first, e.g. "
      "'iconv -f UTF-16 -t UTF-8 IN > OUT', or in PowerShell write it with '| Out-File -Encoding utf8' instead of '>'"]),
]


class ErrorTableTest(TempDirTest):
    def test_bad_bundles_fail_with_exact_messages_and_change_nothing(self) -> None:
        make_tree(self.dest, {"keep.txt": b"mine\n"})
        before = snapshot(self.outer)
        for title, data, lines in ERRORS:
            for argv in (["-o", self.dest], ["-o", self.dest, "-f"], ["-o", self.dest, "-n"], ["-l"]):
                with self.subTest(title, argv=argv):
                    result = run([self.write_bundle(data), *argv])
                    self.assertEqual(result.code, 1)
                    self.assertEqual(result.err.splitlines(), lines)
                    self.assertEqual(result.out, b"")
                    self.assertUnchanged(before)

    def test_errors_in_a_new_output_folder_remove_it_again(self) -> None:
        dest = os.path.join(self.outer, "new", "deeper", "dest")
        data = bundle(("a/b/c", b"x\n"), ("d", b"y\n")) + b"<<<END stray>>>\n"
        before = snapshot(self.outer)
        result = run([self.write_bundle(data), "-o", dest])
        self.assertEqual(result.code, 1)
        self.assertUnchanged(before)


class ConflictTest(TempDirTest):
    def test_every_conflict_is_listed_and_nothing_changes(self) -> None:
        make_tree(self.dest, {"a": b"old a\n", "b": b"same\n", "c": b"old c\n"})
        before = snapshot(self.outer)
        data = bundle(("a", b"new a\n"), ("b", b"same\n"), ("c", b"new c\n"), ("d", b"new d\n"))
        result = run([self.write_bundle(data), "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertEqual(result.err.splitlines(), [
            "splitfile: error: bundle.txt:1: 'a' exists with other content; use -f to replace it",
            "splitfile: error: bundle.txt:7: 'c' exists with other content; use -f to replace it",
        ])
        self.assertUnchanged(before)

    def test_force_replaces_and_same_files_are_untouched(self) -> None:
        make_tree(self.dest, {"a": b"old a\n", "b": b"same\n"})
        same_before = os.stat(os.path.join(self.dest, "b"))
        data = bundle(("a", b"new a\n"), ("b", b"same\n"), ("n/c", b"c\n"))
        result = run([self.write_bundle(data), "-o", self.dest, "-fv"])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.out, b"changed a\nsame b\nnew n/c\n")
        self.assertEqual(files_of(self.dest), {"a": b"new a\n", "b": b"same\n", "n/c": b"c\n"})
        same_after = os.stat(os.path.join(self.dest, "b"))
        self.assertEqual((same_after.st_ino, same_after.st_mtime_ns), (same_before.st_ino, same_before.st_mtime_ns))
        self.assertEqual(leftovers(self.dest), [])

    def test_longer_and_shorter_existing_files_are_changed(self) -> None:
        make_tree(self.dest, {"longer": b"abc\nmore\n", "shorter": b"ab"})
        data = bundle(("longer", b"abc\n"), ("shorter", b"abc\n"))
        result = run([self.write_bundle(data), "-o", self.dest, "-n"])
        self.assertEqual(result.out, b"changed longer\nchanged shorter\n")
        self.assertEqual(result.code, 1)

    def test_force_keeps_permission_bits_but_drops_setuid(self) -> None:
        make_tree(self.dest, {"run.sh": b"old\n", "s": b"old\n"})
        os.chmod(os.path.join(self.dest, "run.sh"), 0o751)
        os.chmod(os.path.join(self.dest, "s"), 0o4755)
        data = bundle(("run.sh", b"new\n"), ("s", b"new\n"))
        self.assertEqual(run([self.write_bundle(data), "-o", self.dest, "-f"]).code, 0)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dest, "run.sh")).st_mode), 0o751)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dest, "s")).st_mode), 0o755)

    def test_new_files_and_folders_follow_the_umask(self) -> None:
        old = os.umask(0o027)
        try:
            result = run([self.write_bundle(bundle(("d/f", b"x\n"))), "-o", self.dest])
        finally:
            os.umask(old)
        self.assertEqual(result.code, 0)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dest, "d")).st_mode), 0o750)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dest, "d", "f")).st_mode), 0o640)

    def test_a_replaced_hard_link_leaves_the_other_name_alone(self) -> None:
        outside = os.path.join(self.outer, "outside.txt")
        make_tree(self.outer, {"outside.txt": b"secret\n"})
        os.link(outside, os.path.join(self.dest, "t"))
        result = run([self.write_bundle(bundle(("t", b"new\n"))), "-o", self.dest, "-f"])
        self.assertEqual(result.code, 0)
        self.assertEqual(files_of(self.outer)["outside.txt"], b"secret\n")
        self.assertEqual(files_of(self.dest)["t"], b"new\n")


class OptionsTest(TempDirTest):
    def test_stdin_is_read_without_a_bundle_argument_and_with_dash(self) -> None:
        data = bundle(("s.txt", b"from stdin\n"))
        for argv in (["-o", self.dest, "-f"], ["-", "-o", self.dest, "-f"]):
            with self.subTest(argv=argv):
                result = run(argv, stdin=data)
                self.assertEqual(result.code, 0, result.err)
                self.assertEqual(files_of(self.dest), {"s.txt": b"from stdin\n"})

    def test_diagnostics_name_stdin_as_source(self) -> None:
        result = run(["-o", self.dest], stdin=b"<<<END a>>>\n")
        self.assertEqual(result.err, "splitfile: error: <stdin>:1: '<<<END a>>>' closes no open block; is the "
                                     "<<<FILE line above it mistyped?\n")

    def test_a_terminal_on_stdin_without_a_bundle_is_a_usage_error(self) -> None:
        result = run(["-o", self.dest], tty=True)
        self.assertEqual(result.code, 2)
        self.assertIn("standard input is a terminal", result.err)
        self.assertEqual(os.listdir(self.dest), [])

    def test_a_missing_bundle_file_is_an_error_not_a_traceback(self) -> None:
        result = run([os.path.join(self.tmp, "nope.txt"), "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertRegex(result.err, r"^splitfile: error: .*nope\.txt: cannot read the bundle: No such file")

    def test_a_folder_as_bundle_is_an_error(self) -> None:
        result = run([self.tmp, "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("cannot read the bundle", result.err)

    def test_dry_run_prints_the_plan_and_writes_nothing(self) -> None:
        make_tree(self.dest, {"same": b"s\n", "diff": b"old\n"})
        before = snapshot(self.outer)
        data = bundle(("same", b"s\n"), ("diff", b"new\n"), ("new/file", b"n\n"))
        result = run([self.write_bundle(data), "-o", self.dest, "-n", "-f"])
        self.assertEqual((result.code, result.out), (0, b"same same\nchanged diff\nnew new/file\n"))
        self.assertUnchanged(before)
        result = run([self.write_bundle(data), "-o", self.dest, "--dry-run"])
        self.assertEqual((result.code, result.out), (1, b"same same\nchanged diff\nnew new/file\n"))
        self.assertIn("'diff' exists with other content", result.err)
        self.assertUnchanged(before)

    def test_dry_run_into_a_missing_folder_creates_nothing(self) -> None:
        dest = os.path.join(self.outer, "missing")
        result = run([self.write_bundle(bundle(("a/b", b""))), "-o", dest, "-n"])
        self.assertEqual((result.code, result.out), (0, b"new a/b\n"))
        self.assertFalse(os.path.exists(dest))

    def test_list_prints_names_and_does_not_look_at_the_output_folder(self) -> None:
        blocker = os.path.join(self.outer, "file")
        make_tree(self.outer, {"file": b"x"})
        data = bundle(("b", b"1\n"), ("a/c", b"2\n"))
        result = run([self.write_bundle(data), "-l", "-o", os.path.join(blocker, "sub")])
        self.assertEqual((result.code, result.out, result.err), (0, b"b\na/c\n", ""))

    def test_verbose_prints_status_after_writing_and_success_is_silent(self) -> None:
        data = self.write_bundle(bundle(("a", b"1\n")))
        self.assertEqual(run([data, "-o", self.dest]).out, b"")
        self.assertEqual(run([data, "-o", self.dest, "-v"]).out, b"same a\n")

    def test_quiet_silences_warnings_only(self) -> None:
        data = self.write_bundle(b" <<<FILE a>>>\n" + bundle(("a", b"1\n")))
        loud = run([data, "-o", self.dest])
        self.assertEqual(loud.err, "splitfile: warning: bundle.txt:1: ' <<<FILE a>>>' looks like a marker but is not "
                                   "one, so it was ignored: it has a leading blank, which is invisible; "
                                   "write '<<<FILE a>>>'\n")
        self.assertEqual(loud.code, 0)
        quiet = run([data, "-o", self.dest, "-qv"])
        self.assertEqual((quiet.code, quiet.err, quiet.out), (0, "", b"same a\n"))
        bad = run([self.write_bundle(b"<<<END x>>>\n"), "-q", "-o", self.dest])
        self.assertIn("closes no open block", bad.err)

    def test_portable_applies_windows_rules(self) -> None:
        data = self.write_bundle(bundle(("aux.c", b""), ("a:b", b"")))
        self.assertEqual(run([data, "-n", "-o", self.dest]).code, 0)
        result = run([data, "-n", "--portable", "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertEqual(len(result.err.splitlines()), 2)
        self.assertEqual(result.out, b"")

    def test_usage_errors_exit_2(self) -> None:
        for argv in (["--nope"], ["-l", "-n"], ["a", "b"], ["-o"]):
            with self.subTest(argv=argv):
                result = run(argv)
                self.assertEqual(result.code, 2)
                self.assertIn("splitfile: error:", result.err)

    def test_help_and_version(self) -> None:
        result = run(["--version"])
        self.assertEqual((result.code, result.out), (0, f"splitfile {splitfile.__version__}\n".encode()))
        result = run(["-h"])
        self.assertEqual(result.code, 0)
        self.assertIn(b"--dry-run", result.out)
        self.assertIn(b"python splitfile.py bundle.txt -o out", result.out)

    def test_double_dash_ends_options(self) -> None:
        path = self.write_bundle(bundle(("x", b"")), name="-v")
        result = run(["-o", self.dest, "--", "-v"])
        self.assertEqual((result.code, result.out), (0, b""), result.err)
        self.assertTrue(os.path.exists(path))
        self.assertIn("x", os.listdir(self.dest))

    def test_output_that_is_a_file_is_an_error(self) -> None:
        make_tree(self.outer, {"f": b"x"})
        before = snapshot(self.outer)
        result = run([self.write_bundle(bundle(("a", b""))), "-o", os.path.join(self.outer, "f")])
        self.assertEqual(result.code, 1)
        self.assertIn("not a directory", result.err)
        self.assertUnchanged(before)

    def test_output_may_be_a_symlink_to_a_folder(self) -> None:
        real = os.path.join(self.outer, "real")
        os.mkdir(real)
        os.symlink(real, os.path.join(self.outer, "link"))
        result = run([self.write_bundle(bundle(("a", b"1\n"))), "-o", os.path.join(self.outer, "link")])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(files_of(real), {"a": b"1\n"})

    def test_sync_flushes_every_file_and_folder(self) -> None:
        data = self.write_bundle(bundle(("a", b"1\n"), ("d/b", b"2\n")))
        with mock.patch("os.fsync", wraps=os.fsync) as fsync:
            self.assertEqual(run([data, "-o", self.dest, "--sync"]).code, 0)
        self.assertGreaterEqual(fsync.call_count, 4)  # two files, dest and d
        with mock.patch("os.fsync", wraps=os.fsync) as fsync:
            self.assertEqual(run([data, "-o", self.dest, "-f"]).code, 0)
        self.assertEqual(fsync.call_count, 0)


class TargetKindTest(TempDirTest):
    """SPEC 3.3: what is at a target, and on its path."""

    def test_a_directory_at_a_target_is_always_an_error(self) -> None:
        os.makedirs(os.path.join(self.dest, "a"))
        before = snapshot(self.outer)
        for flags in ([], ["-f"]):
            result = run([self.write_bundle(bundle(("a", b"x\n"), ("b", b""))), "-o", self.dest, *flags])
            self.assertEqual(result.code, 1)
            self.assertEqual(result.err, "splitfile: error: bundle.txt:1: cannot write 'a': it is a directory; "
                                         "only files are replaced\n")
            self.assertUnchanged(before)

    def test_a_fifo_at_a_target_is_an_error_and_does_not_hang(self) -> None:
        os.mkfifo(os.path.join(self.dest, "p"))
        before = snapshot(self.outer)
        result = run([self.write_bundle(bundle(("p", b"x\n"))), "-o", self.dest, "-f"])
        self.assertEqual(result.code, 1)
        self.assertIn("it is a FIFO", result.err)
        self.assertUnchanged(before)

    def test_a_file_or_symlink_on_the_path_is_an_error(self) -> None:
        make_tree(self.dest, {"f": b"x"})
        os.mkdir(os.path.join(self.dest, "real"))
        os.symlink("real", os.path.join(self.dest, "inside"))
        os.symlink(self.outer, os.path.join(self.dest, "out"))
        before = snapshot(self.outer)
        data = bundle(("f/x", b""), ("inside/x", b""), ("out/x", b""))
        for flags in ([], ["-f"]):
            result = run([self.write_bundle(data), "-o", self.dest, *flags])
            self.assertEqual(result.code, 1)
            self.assertEqual(result.err.splitlines(), [
                "splitfile: error: bundle.txt:1: cannot write 'f/x': 'f' is a file, not a real directory",
                "splitfile: error: bundle.txt:3: cannot write 'inside/x': 'inside' is a symlink, not a real directory",
                "splitfile: error: bundle.txt:5: cannot write 'out/x': 'out' is a symlink, not a real directory",
            ])
            self.assertUnchanged(before)

    def test_a_symlink_at_a_target_is_a_conflict_and_force_replaces_the_link(self) -> None:
        make_tree(self.outer, {"target.txt": b"outside\n"})
        os.symlink(os.path.join(self.outer, "target.txt"), os.path.join(self.dest, "l"))
        before = snapshot(self.outer)
        data = self.write_bundle(bundle(("l", b"outside\n")))
        result = run([data, "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("'l' exists with other content", result.err)
        self.assertUnchanged(before)
        result = run([data, "-o", self.dest, "-fv"])
        self.assertEqual((result.code, result.out), (0, b"changed l\n"))
        self.assertFalse(os.path.islink(os.path.join(self.dest, "l")))
        self.assertEqual(files_of(self.outer)["target.txt"], b"outside\n")


class NoDirFdTest(ForceNoDirFd, TempDirTest):
    """The lstat-based walk used where dir_fd is missing (Windows), forced on."""

    def test_writes_replaces_and_refuses_links_on_the_path(self) -> None:
        make_tree(self.dest, {"a": b"old\n"})
        os.symlink(self.outer, os.path.join(self.dest, "out"))
        data = self.write_bundle(bundle(("a", b"new\n"), ("d/e", b"e\n")))
        with mock.patch("os.open", wraps=os.open) as opened:
            result = run([data, "-o", self.dest, "-fv"])
        self.assertEqual((result.code, result.out), (0, b"changed a\nnew d/e\n"), result.err)
        self.assertTrue(opened.call_args_list)
        self.assertTrue(all(call.kwargs.get("dir_fd") is None for call in opened.call_args_list))
        before = snapshot(self.outer)
        result = run([self.write_bundle(bundle(("out/x", b""))), "-o", self.dest, "-f"])
        self.assertEqual(result.code, 1)
        self.assertIn("'out' is a symlink, not a real directory", result.err)
        self.assertUnchanged(before)


if __name__ == "__main__":
    unittest.main()
