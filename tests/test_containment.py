"""Containment: no call below DIR follows a symlink, and DIR is resolved as the kernel resolves it."""

from __future__ import annotations

import os
import shutil
import stat
import unittest
from unittest import mock

from tests.helpers import (
    ForceNoDirFd, PatchedOs, TempDirTest, bundle, called_by_splitfile, files_of, leftovers, make_tree, run, snapshot, splitfile,
)

class _SwapAt(PatchedOs):
    """Before call number `at` that splitfile makes to an os function, swap what the run made for symlinks."""

    def __init__(self, swap=None, at: int = 0) -> None:
        super().__init__()
        self.swap, self.at = swap, at
        self.count = 0
        self.busy = False

    def _wrap(self, name, real):
        def call(*args, **kwargs):
            if not self.busy:
                if called_by_splitfile():
                    self.count += 1
                    if self.swap and self.count == self.at:
                        self.busy = True
                        try:
                            self.swap()
                        finally:
                            self.busy = False
            return real(*args, **kwargs)
        return call


@unittest.skipUnless(splitfile.HAVE_DIR_FD, "the no-follow walk needs dir_fd")
class SymlinkSwapTest(TempDirTest):
    """Each kind of entry the run creates, swapped for a symlink out of DIR at each step, changes nothing outside."""

    FILES = {"dest/old.txt": b"old\n", "dest/pkg/a.py": b"a = 0\n", "dest/same.txt": b"same\n",
             "outside/victim": b"victim\n", "outside/d/x": b"x\n"}
    BUNDLE = bundle(("old.txt", b"new\n"), ("pkg/a.py", b"a = 1\n"), ("new/deep/b.py", b"b\n"),
                    ("same.txt", b"same\n"), ("c.txt", b"c\n"))

    def fresh(self, tag: str) -> tuple[str, str, str, set[str]]:
        outer = os.path.join(self.tmp, tag)
        make_tree(outer, self.FILES)
        os.mkdir(os.path.join(outer, "held"))
        dest = os.path.join(outer, "dest")
        return outer, dest, os.path.join(outer, "outside"), set(snapshot(dest))

    def swapper(self, kind: str, outer: str, dest: str, known: set[str]):
        def swap() -> None:
            for folder, dirs, files in os.walk(dest):
                for name in dirs + files:
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, dest)
                    if os.path.islink(path):
                        continue
                    is_dir = os.path.isdir(path)
                    wanted = {
                        "temp": not is_dir and name.startswith(".splitfile-") and not name.endswith(".old"),
                        "backup": not is_dir and name.startswith(".splitfile-") and name.endswith(".old"),
                        "folder": is_dir and rel not in known,
                    }[kind]
                    if wanted:
                        os.rename(path, os.path.join(outer, "held", f"{len(os.listdir(os.path.join(outer, 'held')))}"))
                        target = os.path.join(outer, "outside", "d" if is_dir else "victim")
                        os.symlink(target, path)
        return swap

    def test_no_swap_at_any_step_reaches_outside(self) -> None:
        path = self.write_bundle(self.BUNDLE)
        outer, dest, outside, known = self.fresh("reference")
        with _SwapAt() as counter:
            self.assertEqual(run([path, "-f", "-o", dest]).code, 0)
        calls = counter.count
        self.assertGreater(calls, 30)
        swapped = 0
        for kind in ("temp", "backup", "folder"):
            for at in range(1, calls + 1):
                with self.subTest(kind=kind, at=at):
                    outer, dest, outside, known = self.fresh(f"{kind}-{at}")
                    before = snapshot(outside)
                    inodes = {os.lstat(os.path.join(outside, rel)).st_ino for rel in before}
                    with _SwapAt(self.swapper(kind, outer, dest, known), at):
                        result = run([path, "-f", "-o", dest])
                    self.assertIn(result.code, (0, 1), result.err)
                    self.assertNotIn("Traceback", result.err)
                    self.assertEqual(snapshot(outside), before)
                    for rel, entry in snapshot(dest).items():  # no name in DIR is a hard link to a file outside
                        if entry[0] == "file":
                            self.assertNotIn(entry[4], inodes, rel)
                    swapped += bool(os.listdir(os.path.join(outer, "held")))
                    shutil.rmtree(outer)
        self.assertGreater(swapped, 40)


class OutputPathTest(TempDirTest):
    """-o is resolved as the kernel resolves it: `link/..` is the parent of the link's target."""

    def setUp(self) -> None:
        super().setUp()
        self.far = os.path.join(self.outer, "far", "target")
        os.makedirs(self.far)
        self.link = os.path.join(self.dest, "link")
        os.symlink(self.far, self.link)

    def test_a_new_folder_beside_a_links_target_is_made_there_and_nowhere_else(self) -> None:
        before_dest = sorted(os.listdir(self.dest))
        data = self.write_bundle(bundle(("a", b"1\n")))
        out = os.path.join(self.link, "..", "new")
        result = run([data, "-o", out])
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual(files_of(os.path.join(self.outer, "far", "new")), {"a": b"1\n"})
        self.assertEqual(sorted(os.listdir(self.dest)), before_dest)  # no stray folder beside the link
        again = run([data, "-o", out, "-v"])
        self.assertEqual((again.code, again.out), (0, b"same a\n"))
        forced = run([self.write_bundle(bundle(("a", b"2\n"))), "-f", "-o", out])
        self.assertEqual((forced.code, forced.err), (0, ""))
        self.assertEqual(files_of(os.path.join(self.outer, "far", "new")), {"a": b"2\n"})

    def test_a_failed_run_through_link_dotdot_removes_only_what_it_made(self) -> None:
        before = snapshot(self.outer)
        data = self.write_bundle(bundle(("a/b", b"1\n")) + b"<<<FILE never>>>\n")
        result = run([data, "-o", os.path.join(self.link, "..", "new", "sub")])
        self.assertEqual(result.code, 1)
        self.assertIn("never closed", result.err)
        self.assertEqual(snapshot(self.outer), before)

    def test_dry_run_fails_where_the_real_run_would(self) -> None:
        make_tree(self.outer, {"afile": b"x"})
        os.symlink(os.path.join(self.outer, "nowhere"), os.path.join(self.outer, "dangling"))
        data = self.write_bundle(bundle(("a", b"1\n"), ("b/c", b"2\n")))
        for out, message in ((os.path.join(self.outer, "afile", "sub"), "not a directory"),
                             (os.path.join(self.outer, "dangling", "sub"), "a symlink to nothing"),
                             (os.path.join(self.outer, "afile"), "is not a directory")):
            with self.subTest(out=out):
                before = snapshot(self.outer)
                real = run([data, "-o", out])
                self.assertEqual(real.code, 1)
                self.assertIn(message, real.err)
                self.assertEqual(snapshot(self.outer), before)
                dry = run([data, "-n", "-o", out])
                self.assertEqual((dry.code, dry.out), (1, b"new a\nnew b/c\n"))
                self.assertIn(message, dry.err)
                self.assertTrue(dry.err.startswith("splitfile: error: bundle.txt: "), dry.err)
                self.assertEqual(snapshot(self.outer), before)

    def test_dry_run_through_a_folder_it_would_make_and_leave_looks_at_the_targets(self) -> None:
        make_tree(self.dest, {"a": b"other\n"})
        data = self.write_bundle(bundle(("a", b"1\n"), ("b", b"2\n")))
        out = os.path.join(self.dest, "new", "..")  # the run makes `new`, then writes beside it
        before = snapshot(self.outer)
        real = run([data, "-o", out])
        dry = run([data, "-n", "-o", out])
        self.assertEqual((real.code, dry.code), (1, 1))
        self.assertEqual(dry.out, b"changed a\nnew b\n")
        self.assertEqual(real.err, dry.err)
        self.assertIn("'a' exists with other content", dry.err)
        self.assertEqual(snapshot(self.outer), before)

    def test_dry_run_into_a_missing_folder_under_link_dotdot_succeeds(self) -> None:
        data = self.write_bundle(bundle(("a", b"1\n")))
        result = run([data, "-n", "-o", os.path.join(self.link, "..", "new", "deeper")])
        self.assertEqual((result.code, result.out), (0, b"new a\n"))
        self.assertFalse(os.path.lexists(os.path.join(self.outer, "far", "new")))


class LinkFollowTest(TempDirTest):
    """Every os.link the writer makes is told not to follow a symlink."""

    def test_links_never_follow(self) -> None:
        make_tree(self.dest, {"old": b"old\n"})
        real = os.link
        seen = []

        def link(*args, **kwargs):
            seen.append(kwargs.get("follow_symlinks", True))
            return real(*args, **kwargs)

        with mock.patch.object(os, "link", link):
            result = run([self.write_bundle(bundle(("old", b"new\n"), ("d/new", b"n\n"))), "-f", "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(len(seen), 2)  # the backup of old, and the name of d/new
        self.assertEqual(set(seen), {False})
        self.assertEqual(leftovers(self.dest), [])
        self.assertFalse(stat.S_ISLNK(os.lstat(os.path.join(self.dest, "old")).st_mode))


if __name__ == "__main__":
    unittest.main()


class LstatWalkSwapTest(ForceNoDirFd, TempDirTest):
    """Without dir_fd (Windows) a folder is a path: one swapped for a link during the run must not steer the rollback."""

    def test_the_rollback_after_a_folder_became_a_link_touches_nothing_outside(self) -> None:
        make_tree(self.dest, {"sub/c": b"old\n"})
        outside = os.path.join(self.tmp, "outside")
        make_tree(outside, {"c": b"outside c\n", "n/x": b"outside x\n", "a": b"outside a\n"})
        before = snapshot(outside)
        data = bundle(("sub/a", b"A\n"), ("sub/c", b"C\n"), ("sub/n/x", b"X\n"), ("top", b"T\n"))
        real_link = os.link
        links = [0]

        def link_then_swap(*args: object, **kw: object) -> None:
            real_link(*args, **kw)  # type: ignore[arg-type]
            links[0] += 1
            if links[0] == 3:  # sub/a placed, sub/c kept aside: now sub becomes a link to outside
                os.rename(os.path.join(self.dest, "sub"), os.path.join(self.tmp, "moved"))
                os.symlink(outside, os.path.join(self.dest, "sub"))

        with mock.patch.object(os, "link", link_then_swap), self.assertRaises(splitfile.SplitError):
            splitfile.extract(data, self.dest, force=True)
        self.assertEqual(snapshot(outside), before)

    def test_a_folder_that_becomes_a_link_between_two_calls_gets_no_file(self) -> None:
        make_tree(self.dest, {"sub/b.txt": b"old\n"})
        outside = os.path.join(self.tmp, "outside")
        make_tree(outside, {"sub/keep": b"k\n"})
        before = snapshot(outside)
        real_examine = splitfile.Writer._examine

        def examine_then_swap(writer: splitfile.Writer, entry: splitfile.Entry, folder: object) -> None:
            real_examine(writer, entry, folder)  # type: ignore[arg-type]
            os.rename(os.path.join(self.dest, "sub"), os.path.join(self.tmp, "moved"))
            os.symlink(os.path.join(outside, "sub"), os.path.join(self.dest, "sub"))

        with mock.patch.object(splitfile.Writer, "_examine", examine_then_swap), \
                self.assertRaises(splitfile.TargetError):
            splitfile.extract(bundle(("sub/b.txt", b"new\n")), self.dest, force=True)
        self.assertEqual(snapshot(outside), before)
