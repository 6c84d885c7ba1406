"""Bounded descriptors (SPEC 5): any valid bundle works under `ulimit -n 32`."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from tests.helpers import SCRIPT, TempDirTest, bundle, files_of, leftovers, make_tree, snapshot

POSIX = os.name == "posix"
DEEP = "/".join(["a"] * 1100) + "/f.txt"  # 2,206 bytes: a valid name


def run_limited(argv: list[str], limit: int = 32) -> subprocess.CompletedProcess:
    """Run splitfile.py with at most LIMIT open descriptors."""
    import resource

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, timeout=120, preexec_fn=lower)


@unittest.skipUnless(POSIX, "resource limits")
class DescriptorLimitTest(TempDirTest):
    CASES = {
        "1,100 folders": [(f"d{i}/f.txt", b"%d\n" % i) for i in range(1100)],
        "one name 1,100 parts deep": [(DEEP, b"deep\n"), ("a/a/g.txt", b"g\n")],
        "many files in one folder": [(f"one/f{i}", b"%d\n" % i) for i in range(1500)],
    }

    def test_each_bundle_splits_rolls_back_and_dry_runs_at_ulimit_32(self) -> None:
        self.addCleanup(sys.setrecursionlimit, sys.getrecursionlimit())
        sys.setrecursionlimit(20000)  # os.walk and rmtree recurse once per folder level
        for title, files in self.CASES.items():
            with self.subTest(title):
                path = self.write_bundle(bundle(*files))
                dest = os.path.join(self.outer, "ok")
                done = run_limited([path, "-o", dest])
                self.assertEqual(done.returncode, 0, done.stderr[-500:])
                self.assertEqual(files_of(dest), dict(files))
                again = run_limited([path, "-n", "-o", dest])
                self.assertEqual(again.returncode, 0, again.stderr[-500:])
                self.assertEqual(again.stdout.count(b"same "), len(files))
                # A failure at the end undoes everything, folders included, under the same limit.
                make_tree(os.path.join(self.outer, "failing"), {"keep": b"k\n"})
                failing = os.path.join(self.outer, "failing")
                before = snapshot(failing)
                bad = self.write_bundle(bundle(*files) + b"<<<FILE never>>>\n", "bad.txt")
                undone = run_limited([bad, "-o", failing])
                self.assertEqual(undone.returncode, 1, undone.stderr[-500:])
                self.assertIn(b"never closed", undone.stderr)
                self.assertNotIn(b"could not", undone.stderr)
                self.assertEqual(snapshot(failing), before)
                self.assertEqual(leftovers(failing), [])
                # And -f over every file, replacing each.
                changed = self.write_bundle(bundle(*[(name, b"changed\n") for name, _ in files]), "changed.txt")
                forced = run_limited([changed, "-f", "-o", dest])
                self.assertEqual(forced.returncode, 0, forced.stderr[-500:])
                self.assertEqual(set(files_of(dest).values()), {b"changed\n"})
                self.assertEqual(leftovers(dest), [])
                for folder in ("ok", "failing"):
                    import shutil
                    shutil.rmtree(os.path.join(self.outer, folder))


if __name__ == "__main__":
    unittest.main()


class ReopenedFolderTest(TempDirTest):
    """A folder whose descriptor was closed is reopened only if it is still the same folder."""

    def test_a_folder_replaced_by_another_while_closed_fails_the_run_and_is_left_alone(self) -> None:
        import splitfile
        from unittest import mock

        self.addCleanup(mock.patch.stopall)
        mock.patch.object(splitfile, "_folder_budget", lambda: 8).start()
        count = 12
        files = [(f"d{i}/f", b"%d\n" % i) for i in range(count)]
        real_write = os.write
        swapped = []

        def write_and_swap(fd, data):
            if data == b"%d\n" % (count - 1) and not swapped:  # d0's descriptor is long closed
                os.rename(os.path.join(self.dest, "d0"), os.path.join(self.outer, "aside"))
                os.mkdir(os.path.join(self.dest, "d0"))
                make_tree(self.dest, {"d0/theirs": b"theirs\n"})
                swapped.append(True)
            return real_write(fd, data)

        from tests.helpers import run

        with mock.patch.object(os, "write", write_and_swap):
            result = run([self.write_bundle(bundle(*files)), "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("bundle.txt:1: cannot write 'd0/f': 'd0' was replaced by another folder during the run", result.err)
        self.assertNotIn("Traceback", result.err)
        self.assertEqual(files_of(self.dest), {"d0/theirs": b"theirs\n"})  # theirs: not touched, not removed
        self.assertEqual(leftovers(self.dest), [])


class BlockDescriptorTest(TempDirTest):
    """The temporary file and the existing file compared with it are closed when their block ends."""

    def test_no_file_descriptor_outlives_its_block(self) -> None:
        import errno
        import splitfile
        from unittest import mock

        make_tree(self.dest, {"same": b"same\n", "other": b"old\n", "short": b"a\nb\n"})
        real_open = os.open
        opened: list[int] = []

        def recording_open(path, flags, *args, **kwargs):
            fd = real_open(path, flags, *args, **kwargs)
            if not flags & getattr(os, "O_DIRECTORY", 0):
                opened.append(fd)
            return fd

        writer = splitfile.Writer(self.dest, force=True)
        self.addCleanup(writer.close)
        with mock.patch.object(os, "open", recording_open):
            for name, body in (("same", b"same\n"), ("other", b"new\n"), ("short", b"a\n"), ("new", b"n\n")):
                with self.subTest(name=name):
                    opened.clear()
                    entry = writer.add(name, 1)
                    assert entry is not None
                    writer.write(entry, body)
                    writer.end(entry)
                    self.assertTrue(opened)
                    for fd in opened:
                        with self.assertRaises(OSError) as caught:
                            os.fstat(fd)
                        self.assertEqual(caught.exception.errno, errno.EBADF)
        writer.rollback()
        self.assertEqual(leftovers(self.dest), [])


class PerBlockMemoryTest(TempDirTest):
    """What a run keeps about each block stays small (SPEC 5): a million tiny blocks fit in a few hundred MiB."""

    def test_a_run_keeps_less_than_250_bytes_a_block(self) -> None:
        # The peak's growth from 10,000 to 30,000 blocks: what is held per
        # block (names, lines, statuses, the name index), not the events of
        # one chunk, which every run holds once. A dry run, so that no disk is
        # timed; a real run adds only its journal (bench/bench.py measures it).
        import tracemalloc

        import splitfile

        def peak(count: int) -> int:
            data = bundle(*((f"d{i % 100}/f{i}.txt", b"x\n") for i in range(count)))
            sink = splitfile._Sink()
            inp = splitfile._open_input(data, sink)
            writer = splitfile.Writer(os.path.join(self.tmp, f"out{count}"), dry_run=True)
            tracemalloc.start()
            try:
                splitfile._extract(inp, writer, False, sink)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                inp.close()

        small, large = 10_000, 30_000
        per_block = (peak(large) - peak(small)) / (large - small)
        self.assertLess(per_block, 250)
