"""Races and odd inputs that outside probes found: each must fail loudly or succeed whole, never lose a file."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
import time
import unittest
from unittest import mock

from tests.helpers import TempDirTest, bundle, files_of, make_tree, run, snapshot, splitfile


class DryRunPathTest(TempDirTest):
    def test_a_dry_run_through_new_dotdot_to_a_file_fails_like_the_run(self) -> None:
        make_tree(self.dest, {"afile": b"f\n"})
        out = os.path.join(self.dest, "new", "..", "afile", "x")
        real = run(["-o", out], stdin=bundle(("a", b"1\n")))
        dry = run(["-n", "-o", out], stdin=bundle(("a", b"1\n")))
        self.assertEqual((real.code, dry.code), (1, 1))
        self.assertEqual(os.listdir(self.dest), ["afile"])


class FolderGoneTest(TempDirTest):
    def test_a_folder_made_and_removed_by_another_process_is_an_error_not_a_missing_file(self) -> None:
        real_mkdir = os.mkdir

        def racing(path: str, *args: object, **kw: object) -> None:  # someone removes it at once
            real_mkdir(path, *args, **kw)  # type: ignore[arg-type]
            os.rmdir(path, dir_fd=kw.get("dir_fd"))  # type: ignore[arg-type]

        before = snapshot(self.outer)
        with mock.patch("os.mkdir", racing):
            result = run(["-o", self.dest], stdin=bundle(("a", b"a\n"), ("sub/x", b"x\n")))
        self.assertEqual(result.code, 1)
        self.assertEqual(result.err, "splitfile: error: <stdin>:4: cannot write 'sub/x': its folder disappeared"
                                     " during the run\n")
        self.assertUnchanged(before)


class FolderAtTargetTest(TempDirTest):
    def test_a_folder_put_at_a_target_during_a_forced_run_is_never_moved_aside(self) -> None:
        make_tree(self.dest, {"a": b"old\n"})
        real_link = os.link
        target = os.path.join(self.dest, "a")

        def swapping(src: str, dst: str, *args: object, **kw: object) -> None:  # the old file's second name
            if dst.endswith(".old"):
                os.remove(target)
                os.mkdir(target)
                with open(os.path.join(target, "work.txt"), "wb") as f:
                    f.write(b"precious\n")
            real_link(src, dst, *args, **kw)  # type: ignore[arg-type]

        with mock.patch("os.link", swapping):
            result = run(["-f", "-o", self.dest], stdin=bundle(("a", b"new\n")))
        self.assertEqual(result.code, 1)
        self.assertIn("cannot write 'a': it changed during the run: it is a directory now", result.err)
        self.assertEqual(files_of(self.dest), {"a/work.txt": b"precious\n"})


@unittest.skipUnless(splitfile.HAVE_DIR_FD and splitfile._rename_noreplace(), "needs renameat2 (Linux)")
class NoHardLinksTest(TempDirTest):
    """Where hard links are missing, a new file never replaces one that appeared meanwhile."""

    @staticmethod
    def no_links(*args: object, **kw: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    def test_a_file_that_appears_just_before_the_rename_is_never_replaced(self) -> None:
        real = splitfile._rename_noreplace()
        assert real is not None
        target = os.path.join(self.dest, "a.txt")

        def planting() -> object:
            def rename(folder: int, old: str, new: str) -> None:
                if new == "a.txt" and not os.path.exists(target):
                    with open(target, "wb") as f:  # another program, just before the rename
                        f.write(b"theirs\n")
                real(folder, old, new)
            return rename

        with mock.patch("os.link", self.no_links), mock.patch.object(splitfile, "_rename_noreplace", planting):
            result = run(["-o", self.dest], stdin=bundle(("a.txt", b"ours\n")))
        self.assertEqual(result.code, 1)
        self.assertIn("something appeared there during the run", result.err)
        self.assertEqual(files_of(self.dest), {"a.txt": b"theirs\n"})

    def test_without_renameat2_either_a_look_then_a_rename_still_works(self) -> None:
        def refused() -> object:
            def rename(folder: int, old: str, new: str) -> None:
                raise OSError(errno.EINVAL, "Invalid argument")
            return rename

        with mock.patch("os.link", self.no_links), mock.patch.object(splitfile, "_rename_noreplace", refused):
            result = run(["-o", self.dest], stdin=bundle(("a.txt", b"1\n"), ("b/c.txt", b"2\n")))
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual(files_of(self.dest), {"a.txt": b"1\n", "b/c.txt": b"2\n"})


class ShrinkingBundleTest(TempDirTest):
    def test_a_bundle_file_cut_short_while_read_is_an_error(self) -> None:
        data = bundle(*[(f"f{i}", b"x\n" * 50) for i in range(40)])
        path = pathlib.Path(self.write_bundle(data))
        real = splitfile._read_chunks

        def cutting(stream, advance):  # type: ignore[no-untyped-def]
            for number, chunk in enumerate(real(stream, advance)):
                if number == 0:
                    os.truncate(path, 300)  # another program rewrites it
                yield chunk

        before = snapshot(self.outer)
        with mock.patch.object(splitfile, "CHUNK_SIZE", 256), mock.patch.object(splitfile, "_read_chunks", cutting):
            with self.assertRaises(splitfile.DiskError) as caught:
                splitfile.extract(path, self.dest)
        self.assertIn(f"the bundle file shrank while it was read (300 of {len(data)} bytes)", caught.exception.message)
        self.assertUnchanged(before)


class HighDescriptorStreamTest(TempDirTest):
    @unittest.skipUnless(os.name == "posix", "descriptor limits and non-blocking pipes are POSIX")
    def test_a_non_blocking_stream_on_a_descriptor_past_1024_is_read_to_its_end(self) -> None:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 1200:
            self.skipTest("cannot open a descriptor past 1024 here")
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        read_end, write_end = os.pipe()
        high = os.dup2(read_end, 1105)
        os.close(read_end)
        os.set_blocking(high, False)
        blocks = [bundle((f"f{i}.txt", b"%d\n" % i)) for i in range(10)]

        def feed() -> None:
            for block in blocks:
                os.write(write_end, block)
                time.sleep(0.05)
            os.close(write_end)

        writer = threading.Thread(target=feed)
        writer.start()
        with os.fdopen(high, "rb", buffering=0) as stream:
            results = splitfile.extract(stream, self.dest)
        writer.join()
        self.assertEqual(len(results), 10)
        self.assertEqual(len(files_of(self.dest)), 10)


class LineNumbersAreLinearTest(TempDirTest):
    def test_lines_asked_for_out_of_order_are_not_counted_from_the_top_each_time(self) -> None:
        names = [f"d{i}/f.txt" for i in range(400)]
        data = bundle(*[(name, b"x\n" * 20) for name in names + names])  # each name twice: 400 errors
        self.write_bundle(data)
        read = [0]
        real = splitfile._rereader

        def counting(path: str):  # type: ignore[no-untyped-def]
            again = real(path)

            def reread(start: int, end: int):  # type: ignore[no-untyped-def]
                for chunk in again(start, end):
                    read[0] += len(chunk)
                    yield chunk

            return reread

        with mock.patch.object(splitfile, "_rereader", counting):
            result = run(["bundle.txt", "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertEqual(result.err.count("appears twice"), 400)
        first = result.err.splitlines()[0]
        self.assertEqual(first, "splitfile: error: bundle.txt:8801: invalid name 'd0/f.txt': 'd0/f.txt' appears"
                                " twice; the first block is at line 1")
        self.assertLess(read[0], 3 * len(data))


if __name__ == "__main__":
    unittest.main()
