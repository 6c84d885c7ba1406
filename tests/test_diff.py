"""--diff (SPEC 6): exact and appliable output, a bounded cost, escapes on a terminal, bounded memory."""

from __future__ import annotations

import io
import os
import pty
import random
import shutil
import subprocess
import sys
import unittest
from unittest import mock

from tests.helpers import SCRIPT, TempDirTest, bundle, files_of, make_tree, read_terminal, run, splitfile

PATCH = shutil.which("patch")
GIT = shutil.which("git")


def diff_of(old: bytes, new: bytes, name: str = "f.txt", visible: bool = False, new_file: bool = False) -> bytes:
    """Return splitfile's diff from OLD to NEW, made in memory."""
    out = io.BytesIO()
    splitfile._diff(name, new_file, (io.BytesIO(old), 0, len(old)), (io.BytesIO(new), 0, len(new)), out, visible)
    return out.getvalue()


def random_text(rng: random.Random, lines: int, alphabet: list[bytes]) -> bytes:
    text = b"".join(rng.choice(alphabet) for _ in range(lines))
    return text.rstrip(b"\n") if rng.random() < 0.25 else text


class DiffCostTest(unittest.TestCase):
    """The work of the diff, counted (never timed): bounded by its budget even where difflib is slowest."""

    def test_repeated_lines_cannot_make_difflib_weigh_more_than_the_budget(self) -> None:
        old, new = [], []
        for anchor in range(60):  # unique anchors between regions difflib is slowest on
            old += [b"anchor %d\n" % anchor] + [b"x\n"] * 256
            new += [b"anchor %d\n" % anchor] + [b"y\n", b"x\n"] * 128
        weighed = [0]
        import difflib

        real = difflib.SequenceMatcher

        def counting(junk: object, a: list[int], b: list[int], autojunk: bool = True) -> difflib.SequenceMatcher:
            weighed[0] += len(a) * len(b)
            return real(junk, a, b, autojunk=autojunk)  # type: ignore[arg-type]

        with mock.patch("difflib.SequenceMatcher", counting):
            patch = diff_of(b"".join(old), b"".join(new))
        lines = len(old) + len(new)
        self.assertLessEqual(weighed[0], splitfile.DIFF_WORK * lines + (1 << 16))
        self.assertIn(b"@@", patch)


class WholeDiffAppliesTest(TempDirTest):
    """The diff of a whole bundle turns the folder into what extract() would make, with patch and with git apply."""

    @unittest.skipUnless(PATCH and GIT, "patch or git is not installed")
    def test_new_empty_files_and_names_with_blanks_apply(self) -> None:
        before = {"my notes.txt": b"old\n", "keep.txt": b"same\n", "sub dir/a b.txt": b"1\n2\n"}
        data = bundle(("my notes.txt", b"new\n"), ("keep.txt", b"same\n"), ("empty", b""),
                      ("sub dir/a b.txt", b"1\n3\n"), ("new dir/x y.txt", b"z\n"), ("deep/empty too", b""))
        make_tree(self.dest, before)
        patch = b"".join(found.text for found in splitfile.diff(data, self.dest))
        wanted = os.path.join(self.tmp, "wanted")
        make_tree(wanted, before)
        splitfile.extract(data, wanted, force=True)
        for argv in (["patch", "-s", "-p1"], ["git", "apply", "-"]):
            with self.subTest(tool=argv[0]):
                work = os.path.join(self.tmp, argv[0])
                make_tree(work, before)
                done = subprocess.run(argv, input=patch, cwd=work, capture_output=True, timeout=60)
                self.assertEqual(done.returncode, 0, (done.stdout, done.stderr, patch))
                self.assertEqual(files_of(work), files_of(wanted))


class AppliesTest(TempDirTest):
    """Whatever the diff's shape, the real tools turn the old file into the new one with it."""

    def apply(self, tool: str, old: bytes, patch: bytes, name: str = "f.txt") -> bytes:
        work = os.path.join(self.tmp, "apply")
        shutil.rmtree(work, ignore_errors=True)
        make_tree(work, {name: old})
        argv = ["patch", "-s", "-p1"] if tool == "patch" else ["git", "apply", "--unsafe-paths", "-"]
        result = subprocess.run(argv, input=patch, cwd=work, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, (result.stdout, result.stderr, patch[:2000]))
        with open(os.path.join(work, name), "rb") as f:
            return f.read()

    def check_applies(self, old: bytes, new: bytes) -> bytes:
        patch = diff_of(old, new)
        for tool, found in (("patch", PATCH), ("git", GIT)):
            if found and old != new:
                self.assertEqual(self.apply(tool, old, patch), new, patch)
        return patch

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_random_diffs_apply_with_patch_and_git(self) -> None:
        rng = random.Random(9)
        alphabet = [b"a\n", b"b\n", b"}\n", b"\n", b"x\ry\n", b"\tz\r\n"] + [b"%d\n" % n for n in range(30)]
        for case in range(40):
            with self.subTest(case=case):
                self.check_applies(random_text(rng, rng.randrange(60), alphabet),
                                   random_text(rng, rng.randrange(60), alphabet))

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_every_other_line_changed_applies(self) -> None:
        # difflib took 28 s on a file like this one; the alignment by unique lines takes well under one.
        old = b"".join(b"    value_%d = compute(%d)  # some source\n" % (i, i) for i in range(14000))
        new = b"".join(line.replace(b"compute", b"changed") if i % 2 else line
                       for i, line in enumerate(old.splitlines(keepends=True)))
        self.assertGreater(len(old), 590_000)
        patch = self.check_applies(old, new)
        self.assertNotIn(b"splitfile: note", patch)
        self.assertEqual(patch.count(b"\n-"), 7001)  # the "--- a/f.txt" line, then  # only the changed lines, not a whole-file hunk

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_past_the_budget_one_whole_file_hunk_with_a_note(self) -> None:
        old = b"".join(b"old %d\n" % i for i in range(50)) + b"same\n"
        new = b"same\n" + b"".join(b"new %d\n" % i for i in range(40)) + b"end"
        with mock.patch.object(splitfile, "DIFF_MAX_LINES", 20):
            patch = self.check_applies(old, new)
        lines = patch.split(b"\n")
        self.assertEqual(lines[0], b"splitfile: note: the changes to 'f.txt' are shown as one hunk: too large or"
                                   b" too costly to compare line by line (51 and 42 lines between the first and the"
                                   b" last change)")
        self.assertEqual(lines[1:5], [b"diff --git a/f.txt b/f.txt", b"--- a/f.txt", b"+++ b/f.txt", b"@@ -1,51 +1,42 @@"])
        self.assertEqual(sum(line.startswith(b"-") for line in lines[4:]), 51)
        self.assertEqual(sum(line.startswith(b"+") for line in lines[4:]), 42)
        self.assertEqual(lines[-3:], [b"+end", b"\\ No newline at end of file", b""])

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_a_line_too_long_to_hash_gives_a_whole_file_hunk(self) -> None:
        old = b"a\n" + b"y" * 5000 + b"\nb\n"
        with mock.patch.object(splitfile, "DIFF_MAX_LINE", 1000), mock.patch.object(splitfile, "CHUNK_SIZE", 512):
            patch = self.check_applies(old, old.replace(b"b", b"c"))
        self.assertIn(b"are shown as one hunk", patch)
        self.assertIn(b"@@ -1,3 +1,3 @@", patch)

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_a_region_too_costly_to_align_is_shown_whole_with_a_note(self) -> None:
        old = b"".join(b"%d\n" % (i % 7) for i in range(300))
        new = b"".join(b"%d\n" % (i % 5) for i in range(300))
        with mock.patch.object(splitfile, "DIFF_GAP_CELLS", 100):
            patch = self.check_applies(old, new)
        self.assertIn(b"splitfile: note: some changed regions of 'f.txt' are shown whole", patch)

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_common_starts_and_ends_are_trimmed_in_chunks_of_any_size(self) -> None:
        rng = random.Random(5)
        alphabet = [b"a\n", b"b\n", b"\n", b"c\r\n", b"\xc3\xa9\n", b"long " * 9 + b"\n"]
        for case in range(30):
            common_start = random_text(rng, rng.randrange(12), alphabet)
            common_start += b"\n" if common_start and not common_start.endswith(b"\n") else b""
            common_end = random_text(rng, rng.randrange(12), alphabet)
            old = common_start + random_text(rng, rng.randrange(4), alphabet[:3]) + common_end
            new = common_start + random_text(rng, rng.randrange(4), alphabet[1:]) + common_end
            with self.subTest(case=case):
                whole = self.check_applies(old, new)
                for size in (1, 2, 5):
                    with mock.patch.object(splitfile, "CHUNK_SIZE", size):
                        self.assertEqual(diff_of(old, new), whole)

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_a_file_past_the_line_limit_with_one_change_gets_a_small_hunk(self) -> None:
        old = b"".join(b"line %d\n" % i for i in range(1000))
        new = old.replace(b"line 500\n", b"line five hundred\n")
        with mock.patch.object(splitfile, "DIFF_MAX_LINES", 50):
            patch = self.check_applies(old, new)
            appended = self.check_applies(old, old + b"more\n")
        self.assertEqual(patch, b"diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -498,7 +498,7 @@\n line 497\n line 498\n line 499\n"
                                b"-line 500\n+line five hundred\n line 501\n line 502\n line 503\n")
        self.assertEqual(appended, b"diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -998,3 +998,4 @@\n line 997\n line 998\n"
                                   b" line 999\n+more\n")

    def test_a_file_not_utf8_anywhere_is_binary(self) -> None:
        lines = b"".join(b"%d\n" % i for i in range(20))
        for old, new in ((b"\xff\n" + lines + b"a\n", b"\xff\n" + lines + b"b\n"),  # in the common start
                         (b"a\n" + lines + b"\xff\n", b"b\n" + lines + b"\xff\n"),  # in the common end
                         (lines + b"\xffa\n" + lines, lines + b"b\n" + lines)):  # in the middle
            with self.subTest(old=old, new=new):
                self.assertEqual(diff_of(old, new), b"Binary files a/f.txt and b/f.txt differ\n")
        self.assertTrue(diff_of(lines + b"a\n", lines + b"b\n").startswith(b"diff --git a/f.txt b/f.txt\n--- a/f.txt"))

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_lines_whose_hashes_collide_are_never_shown_as_unchanged(self) -> None:
        old = b"same\nold line\nsame too\n"
        new = b"same\nnew line\nsame too\n"
        with mock.patch.object(splitfile, "hash", lambda value: 0, create=True):  # every line collides
            patch = self.check_applies(old, new)
        self.assertIn(b"-old line\n", patch)
        self.assertIn(b"+new line\n", patch)
        self.assertIn(b"are shown as one hunk", patch)

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_small_chunks_give_the_same_diff(self) -> None:
        rng = random.Random(4)
        alphabet = [b"a\n", b"bb\n", b"\xc3\xa9\n", b"\xe2\x82\xac\r\n", b"x\x1by\n"]
        for case in range(20):
            old, new = random_text(rng, 40, alphabet), random_text(rng, 40, alphabet)
            with self.subTest(case=case):
                whole = diff_of(old, new)
                with mock.patch.object(splitfile, "CHUNK_SIZE", rng.randrange(1, 9)):
                    self.assertEqual(diff_of(old, new), whole)
                    self.assertEqual(diff_of(old, new, visible=True), diff_of(old, new, visible=True))

    def test_myers_finds_a_longest_common_subsequence_within_its_limit(self) -> None:
        from array import array

        rng = random.Random(3)
        for case in range(400):
            a = array("q", [rng.randrange(3) for _ in range(rng.randrange(25))])
            b = array("q", [rng.randrange(3) for _ in range(rng.randrange(25))])
            longest = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
            for i in range(len(a) - 1, -1, -1):
                for j in range(len(b) - 1, -1, -1):
                    longest[i][j] = longest[i + 1][j + 1] + 1 if a[i] == b[j] else max(longest[i + 1][j],
                                                                                         longest[i][j + 1])
            edits = len(a) + len(b) - 2 * longest[0][0]
            with self.subTest(case=case):
                self.assertIsNone(splitfile._myers(a, 0, len(a), b, 0, len(b), edits - 1) if edits else None)
                runs = splitfile._myers(a, 0, len(a), b, 0, len(b), edits)
                assert runs is not None
                done_a = done_b = total = 0
                for k in range(0, len(runs), 3):
                    i, j, size = runs[k:k + 3]
                    self.assertTrue(i >= done_a and j >= done_b and size > 0)
                    self.assertEqual(a[i:i + size], b[j:j + size])
                    done_a, done_b, total = i + size, j + size, total + size
                self.assertEqual(total, longest[0][0])

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_a_large_region_without_unique_lines_and_few_edits_gets_a_small_diff(self) -> None:
        old = b"x\ny\n" * 500
        new = b"y\nx\n" * 500  # one line gone at the start, one added at the end
        with mock.patch.object(splitfile, "DIFF_GAP_CELLS", 100):
            patch = self.check_applies(old, new)
        self.assertNotIn(b"splitfile: note", patch)
        changed = [line for line in patch.split(b"\n")[3:] if line[:1] in (b"-", b"+")]
        self.assertEqual(changed, [b"-x", b"+x"])

    def test_same_hunks_as_difflib(self) -> None:
        import difflib
        from array import array

        rng = random.Random(2)
        for case in range(300):
            a = [rng.choice("abcde") for _ in range(rng.randrange(40))]
            b = [rng.choice("abcdf") for _ in range(rng.randrange(40))]
            matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
            runs = array("q")
            for i, j, n in matcher.get_matching_blocks():
                splitfile._add_run(runs, i, j, n)
            with self.subTest(case=case):
                self.assertEqual(list(splitfile._groups(splitfile._opcodes(runs, len(a), len(b)), 3)),
                                 list(matcher.get_grouped_opcodes(3)))


class TerminalTest(TempDirTest):
    EVIL = b'import os; os.system("echo PWNED")\r# just a comment\n'

    def test_control_characters_are_escaped_for_a_terminal_only(self) -> None:
        old = b"keep\n"
        new = b"keep\n" + self.EVIL + b"\x1b[2Jclear\xc2\x85\tTab\r\n" + b"last\r"
        shown = diff_of(old, new, visible=True)
        self.assertEqual(shown.decode(), (
            "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1,4 @@\n keep\n"
            '+import os; os.system("echo PWNED")\\r# just a comment\n'
            "+\\x1b[2Jclear\\x85\tTab\r\n"
            "+last\\r\n\\ No newline at end of file\n"
            "splitfile: note: 'f.txt' holds control or invisible characters, shown above as escapes such as \\r,"
            " \\x1b and \\u202e; piped output keeps them as they are\n"
        ))
        piped = diff_of(old, new)
        self.assertIn(b"+" + self.EVIL, piped)
        self.assertNotIn(b"splitfile: note", piped)
        self.assertNotIn(b"splitfile: note", diff_of(b"a\r\n", b"b\r\n", visible=True))  # CRLF is no trick

    def test_characters_that_reorder_or_hide_text_are_escaped_for_a_terminal(self) -> None:
        # "Trojan Source": the bidi override makes a terminal show the check's end as a comment.
        trojan = 'if access != "user\u202e \u2066// admin\u2069 \u2066":\u200b\u2028\ufeff\u061c\n'.encode()
        shown = diff_of(b"", trojan, visible=True).decode()
        self.assertIn('+if access != "user\\u202e \\u2066// admin\\u2069 \\u2066":'
                      "\\u200b\\u2028\\ufeff\\u061c\n", shown)
        self.assertIn("holds control or invisible characters", shown)
        self.assertIn(b"+" + trojan, diff_of(b"", trojan))  # piped: exact
        plain = "caf\u00e9 \u65e5\u672c \u2014 \u20ac\n".encode()  # other non-ASCII text is left alone
        self.assertIn(b"+" + plain, diff_of(b"", plain, visible=True))
        self.assertNotIn(b"splitfile: note", diff_of(b"", plain, visible=True))

    @unittest.skipUnless(os.name == "posix", "needs a pseudo-terminal")
    def test_a_real_terminal_sees_the_hidden_half(self) -> None:
        make_tree(self.dest, {"tool.py": b"print('hi')\n"})
        path = self.write_bundle(bundle(("tool.py", self.EVIL)))
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, SCRIPT, path, "--diff", "-o", self.dest], stdout=follower,
                                stderr=subprocess.PIPE)
        os.close(follower)
        screen = read_terminal(leader)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b'+import os; os.system("echo PWNED")\\r# just a comment', screen)
        self.assertNotIn(b"\r#", screen)
        self.assertIn(b"holds control or invisible characters", screen)

    @unittest.skipUnless(PATCH, "patch is not installed")
    def test_piped_output_is_raw_and_applies(self) -> None:
        make_tree(self.dest, {"tool.py": b"print('hi')\n"})
        path = self.write_bundle(bundle(("tool.py", self.EVIL)))
        result = subprocess.run([sys.executable, SCRIPT, path, "--diff", "-o", self.dest], capture_output=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"+" + self.EVIL, result.stdout)
        subprocess.run(["patch", "-s", "-p1"], input=result.stdout, cwd=self.dest, check=True, timeout=60)
        with open(os.path.join(self.dest, "tool.py"), "rb") as f:
            self.assertEqual(f.read(), self.EVIL)


class CliTest(TempDirTest):
    def test_target_copy_and_kept_bodies_stream_in_chunks(self) -> None:
        make_tree(self.dest, {"a.txt": b"1\n2\n3\n", "b.txt": b"x\n"})
        path = self.write_bundle(bundle(("a.txt", b"1\n2\nthree\n"), ("b.txt", b"x\n"), ("c.txt", b"new\n")))
        with mock.patch.object(splitfile, "CHUNK_SIZE", 2):
            result = run([path, "--diff", "-o", self.dest])
            printed = run([path, "-p", "c.txt", "-p", "a.txt"])
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual(result.out, b"diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n 1\n 2\n-3\n+three\n"
                                     b"diff --git a/c.txt b/c.txt\nnew file mode 100644\n--- /dev/null\n+++ b/c.txt\n@@ -0,0 +1 @@\n+new\n")
        self.assertEqual((printed.code, printed.out), (0, b"new\n1\n2\nthree\n"))

    def test_kept_bodies_spill_to_disk(self) -> None:
        body = b"".join(b"line %d\n" % i for i in range(200_000))  # 2.3 MB: more than the spool keeps in memory
        path = self.write_bundle(bundle(("big.txt", body), ("small.txt", b"s\n")))
        result = run([path, "-p", "big.txt", "-p", "small.txt", "-p", "big.txt"])
        self.assertEqual(result.out, body + b"s\n" + body)

    def test_the_collector_keeps_bodies_back_to_back(self) -> None:
        collector = splitfile._Collector(None)  # None: every body
        self.addCleanup(collector.close)
        for name, pieces in (("a", [b"1\n", b"2\n"]), ("b", []), ("c", [b"x" * (3 << 20), b"\n"])):
            entry = collector.add(name, 0)
            assert entry is not None
            for piece in pieces:
                collector.write(entry, memoryview(piece))
            collector.end(entry)
        self.assertEqual(collector.names, ["a", "b", "c"])
        self.assertEqual([collector.body(name) for name in "abc"], [b"1\n2\n", b"", b"x" * (3 << 20) + b"\n"])
        stream, start, size = collector.body_span("c")
        self.assertEqual((start, size), (4, (3 << 20) + 1))
        picky = splitfile._Collector(["a"])
        self.addCleanup(picky.close)
        for name in "ba":
            entry = picky.add(name, 0)
            assert entry is not None
            picky.write(entry, memoryview(name.encode() + b"\n"))
            picky.end(entry)
        self.assertEqual((picky.has_body("a"), picky.has_body("b")), (True, False))
        self.assertEqual(picky.body_span("a")[1:], (0, 2))

    def test_out_of_memory_is_an_error_line(self) -> None:
        path = self.write_bundle(bundle(("a.txt", b"a\n")))
        with mock.patch.object(splitfile, "_diff_entry", side_effect=MemoryError):
            result = run([path, "--diff", "-o", self.dest])
        self.assertEqual((result.code, result.out), (1, b""))
        self.assertEqual(result.err, "splitfile: error: out of memory; nothing was written"
                                     " (free some memory and run again)\n")


LIMITED = r"""
import resource, runpy, sys
limit = int(sys.argv.pop(1))
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + limit, vm + limit))
sys.argv[0] = sys.argv[1]
del sys.argv[1]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@unittest.skipUnless(sys.platform.startswith("linux"), "needs /proc and RLIMIT_AS")
class MemoryTest(TempDirTest):
    """A 300 MB body under an address-space limit of 200 MB above the interpreter's own."""

    SIZE = 300_000_000

    def setUp(self) -> None:
        super().setUp()
        line = b"x" * 99 + b"\n"
        path = os.path.join(self.tmp, "big-bundle.txt")
        with open(path, "wb") as f:
            f.write(b"<<<FILE huge.txt>>>\n")
            block = line * 10_000
            for _ in range(self.SIZE // len(block)):
                f.write(block)
            f.write(b"<<<END huge.txt>>>\n")
        self.bundle = path
        self.addCleanup(os.remove, path)

    def limited(self, argv: list[str], out: str) -> subprocess.CompletedProcess[bytes]:
        with open(out, "wb") as f:
            return subprocess.run([sys.executable, "-c", LIMITED, str(200 << 20), SCRIPT, *argv], stdout=f,
                                  stderr=subprocess.PIPE, timeout=300)

    def test_diff_print_and_pack_of_a_huge_body_stay_within_the_limit(self) -> None:
        out = os.path.join(self.tmp, "out")
        size = self.SIZE
        result = self.limited([self.bundle, "-p", "huge.txt"], out)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(os.path.getsize(out), size)
        result = self.limited([self.bundle, "--diff", "-o", self.dest], out)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        with open(out, "rb") as f:
            head = f.read(300)
        self.assertTrue(head.startswith(b"diff --git a/huge.txt b/huge.txt\nnew file mode 100644\n--- /dev/null\n+++ b/huge.txt\n@@ -0,0 +1,3000000 @@\n+xxx"), head)
        self.assertEqual(os.path.getsize(out), head.index(b"\n+x") + 1 + size + 3_000_000)  # a "+" a line
        self.assertNoTraceback(result.stderr.decode())
        with open(out, "wb") as f:
            result = subprocess.run([sys.executable, "-c", LIMITED, str(200 << 20), SCRIPT, "--pack", "big-bundle.txt"],
                                    stdout=f, stderr=subprocess.PIPE, timeout=300, cwd=self.tmp)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        markers = len(b"<<<FILE big-bundle.txt>>>\n<<<END big-bundle.txt>>>\n")
        self.assertEqual(os.path.getsize(out), os.path.getsize(self.bundle) + markers)


if __name__ == "__main__":
    unittest.main()
