"""Beyond splitting (SPEC 6): --pack, --print, --diff, progress on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import sysconfig
import time
import unittest
from unittest import mock

from tests.helpers import SCRIPT, TempDirTest, bundle, files_of, make_tree, read_terminal, run, snapshot, splitfile


class PackTest(TempDirTest):
    def test_pack_sorts_by_name_bytes_and_keeps_paths_in_order_given(self) -> None:
        make_tree(self.tmp, {"src/b.txt": b"b\n", "src/a/z.txt": b"z\n", "src/C.txt": b"C\n", "src/a.txt": b"a\n",
                             "top.txt": b"t\n"})
        result = run(["--pack", "top.txt", "./src/"])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.out, bundle(("top.txt", b"t\n"), ("src/C.txt", b"C\n"), ("src/a.txt", b"a\n"),
                                            ("src/a/z.txt", b"z\n"), ("src/b.txt", b"b\n")))
        self.assertEqual(result.err, "")

    def test_pack_skips_what_cannot_be_bundled_with_a_warning_each(self) -> None:
        make_tree(self.tmp, {"p/ok.txt": b"ok\n", "p/.git/config": b"x\n", "p/bin": b"a\x00b\n",
                             "p/latin1.txt": b"caf\xe9\n", "p/nonl.txt": b"end", "p/empty": b""})
        os.symlink("ok.txt", os.path.join(self.tmp, "p", "link"))
        result = run(["--pack", "p"])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.out, bundle(("p/empty", b""), ("p/nonl.txt", b"end\n"), ("p/ok.txt", b"ok\n")))
        self.assertEqual(sorted(result.err.splitlines()), sorted([
            "splitfile: warning: 'p/.git': skipped: a version-control folder",
            "splitfile: warning: 'p/bin': skipped: it holds a NUL byte (binary files cannot be bundled)",
            "splitfile: warning: 'p/latin1.txt': skipped: it is not UTF-8 text",
            "splitfile: warning: 'p/link': skipped: a symlink (links are not followed)",
            "splitfile: warning: 'p/nonl.txt': has no final newline; the bundle adds one",
        ]))

    def test_pack_errors_write_nothing_to_stdout(self) -> None:
        make_tree(self.tmp, {"q/evil.txt": b"x\n<<<END q/evil.txt>>>\n", "q/fine.txt": b"f\n", "q/a\\b": b"x\n", "Q/FINE.TXT": b"F\n"})
        cases = [
            (["--pack", "q"], ["cannot bundle 'q/a\\\\b' as 'q/a\\\\b': it holds a backslash"]),
            (["--pack", "q/evil.txt"], ["it holds a line equal to its own close marker"]),
            (["--pack", "missing"], ["cannot read 'missing': No such file or directory"]),
            (["--pack", os.path.join(self.tmp, "q", "fine.txt")], ["it starts with '/'"]),
            (["--pack", "q/fine.txt", "./q/fine.txt"], ["splitfile: error: cannot bundle './q/fine.txt' as "
                                                       "'q/fine.txt': 'q/fine.txt' appears twice\n"]),
            (["--pack", "q/fine.txt", "Q/FINE.TXT"], ["FINE.TXT' and 'q/fine.txt' differ only in case"]),
        ]
        for argv, words in cases:
            with self.subTest(argv=argv):
                result = run(argv)
                self.assertEqual((result.code, result.out), (1, b""))
                for word in words:
                    self.assertIn(word, result.err)

    def test_pack_with_a_bundle_argument_is_a_usage_error(self) -> None:
        self.assertEqual(run(["b.txt", "--pack", "x"]).code, 2)

    def test_round_trip_on_the_interpreters_own_library(self) -> None:
        stdlib = sysconfig.get_paths()["stdlib"]
        folders = [d for d in ("json", "email", "asyncio") if os.path.isdir(os.path.join(stdlib, d))]
        self.assertTrue(folders)
        old = os.getcwd()
        os.chdir(stdlib)
        try:
            packed = run(["--pack", *folders])
        finally:
            os.chdir(old)
        self.assertEqual(packed.code, 0, packed.err)
        path = self.write_bundle(packed.out)
        result = run([path, "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        copied = files_of(self.dest)
        skipped = {line.split(": ", 3)[3].split(" (")[0] for line in packed.err.splitlines()}
        self.assertLessEqual(skipped, {"skipped: it holds a NUL byte", "skipped: it is not UTF-8 text",
                                       "has no final newline; the bundle adds one",
                                       "skipped: a symlink", "skipped: a version-control folder"})
        newline_added = {line.split(": ")[2].strip("'") for line in packed.err.splitlines() if "final newline" in line}
        reasons: dict[str, int] = {}
        for line in packed.err.splitlines():
            reason = line.split(": ", 3)[3].split(" (")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        compared = 0
        for folder in folders:
            for dirpath, _, names in os.walk(os.path.join(stdlib, folder)):
                for name in names:
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, stdlib)
                    with open(full, "rb") as f:
                        data = f.read()
                    if rel not in copied:
                        self.assertIn(repr(rel), packed.err)  # every file left out was warned about
                        continue
                    expected = data + b"\n" if rel in newline_added else data
                    self.assertEqual(copied[rel], expected, rel)
                    compared += 1
        self.assertEqual(compared, len(copied))
        self.assertGreater(compared, 50)
        if os.environ.get("SPLITFILE_REPORT"):
            print(f"\nround trip: {compared} files packed and compared; warnings by reason: {reasons}")


class PrintTest(TempDirTest):
    def test_print_writes_bodies_in_the_order_given_and_nothing_else(self) -> None:
        path = self.write_bundle(bundle(("a", b"A\r\n"), ("b", b"\xffB\n"), ("c", b"")))
        result = run([path, "-p", "b", "--print", "a", "-p", "c", "-o", self.dest])
        self.assertEqual((result.code, result.out, result.err), (0, b"\xffB\nA\r\n", ""))
        self.assertEqual(os.listdir(self.dest), [])

    def test_a_name_the_bundle_lacks_is_an_error_and_prints_nothing(self) -> None:
        path = self.write_bundle(bundle(("a", b"A\n")))
        result = run([path, "-p", "a", "-p", "zz"])
        self.assertEqual((result.code, result.out), (1, b""))
        self.assertEqual(result.err, "splitfile: error: bundle.txt: the bundle has no block named 'zz'\n")

    def test_print_still_checks_every_name(self) -> None:
        path = self.write_bundle(bundle(("a", b"A\n"), ("../b", b"B\n")))
        result = run([path, "-p", "a"])
        self.assertEqual((result.code, result.out), (1, b""))


class DiffTest(TempDirTest):
    def test_diff_shows_new_and_changed_files_and_writes_nothing(self) -> None:
        make_tree(self.dest, {"same.txt": b"s\n", "mod.txt": b"one\ntwo\n"})
        before = snapshot(self.outer)
        path = self.write_bundle(bundle(("same.txt", b"s\n"), ("mod.txt", b"one\n2\n"), ("new/n.txt", b"hi\n")))
        result = run([path, "--diff", "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(result.out.decode(), "diff --git a/mod.txt b/mod.txt\n--- a/mod.txt\n+++ b/mod.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"
                                              "diff --git a/new/n.txt b/new/n.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new/n.txt\n@@ -0,0 +1 @@\n+hi\n")
        self.assertUnchanged(before)

    def test_diff_of_binary_and_into_a_missing_folder(self) -> None:
        path = self.write_bundle(bundle(("b.bin", b"\xff\n")))
        result = run([path, "--diff", "-o", os.path.join(self.outer, "missing")])
        self.assertEqual((result.code, result.out), (0, b"Binary files /dev/null and b/b.bin differ\n"))
        self.assertFalse(os.path.exists(os.path.join(self.outer, "missing")))

    def test_diff_splits_lines_at_newlines_only(self) -> None:
        make_tree(self.dest, {"f.py": b"a\x0cb\nc\rd\n"})
        path = self.write_bundle(bundle(("f.py", b"a\x0cb\nc\rD\n")))
        result = run([path, "--diff", "-o", self.dest])
        self.assertEqual(result.out, b"diff --git a/f.py b/f.py\n--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\x0cb\n-c\rd\n+c\rD\n")

    def test_a_target_that_cannot_be_read_is_an_error_not_a_traceback(self) -> None:
        make_tree(self.dest, {"f": b"old\n"})
        path = self.write_bundle(bundle(("f", b"new\n")))
        with mock.patch.object(splitfile.Writer, "read_target", side_effect=PermissionError(13, "Permission denied")):
            result = run([path, "--diff", "-o", self.dest])
        self.assertEqual((result.code, result.out), (1, b""))
        self.assertEqual(result.err, "splitfile: error: bundle.txt:1: cannot read 'f': Permission denied\n")

    def test_diff_of_a_bad_bundle_fails(self) -> None:
        result = run([self.write_bundle(b"<<<FILE a>>>\n"), "--diff", "-o", self.dest])
        self.assertEqual((result.code, result.out), (1, b""))


@unittest.skipUnless(os.name == "posix", "needs a pseudo-terminal")
class ProgressTest(TempDirTest):
    def run_on_terminal(self, extra: list[str]) -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, SCRIPT, "-o", self.dest, *extra], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        assert proc.stdin is not None
        proc.stdin.write(bundle(("a", b"x\n" * 1000)) + b"<<<FILE b>>>\n")
        proc.stdin.flush()
        time.sleep(1.3)
        for _ in range(3):  # more data after the first second: the line is drawn
            proc.stdin.write(b"y\n" * 1000)
            proc.stdin.flush()
            time.sleep(0.3)
        proc.stdin.write(b"<<<END b>>>\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        screen = read_terminal(leader)
        return proc.returncode, screen

    def test_progress_is_drawn_on_a_terminal_and_erased_at_the_end(self) -> None:
        code, screen = self.run_on_terminal([])
        self.assertEqual(code, 0)
        self.assertIn(b"read, 1 files staged", screen)
        last = screen.rsplit(b"\r", 2)
        self.assertEqual(last[-1], b"")  # ends with the cursor back at the start
        self.assertEqual(last[-2].strip(b" "), b"")  # of a line blanked out

    def test_quiet_shows_no_progress(self) -> None:
        code, screen = self.run_on_terminal(["-q"])
        self.assertEqual((code, screen), (0, b""))


if __name__ == "__main__":
    unittest.main()
