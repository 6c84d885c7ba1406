"""Safety promises (SPEC 3): traps under DIR, injected faults, hostile names end to end.

Every check snapshots the whole `outer` folder around `outer/dest`, so that
a write anywhere outside DIR, or a change inside it after a failure, shows.
"""

from __future__ import annotations

import errno
import os
import sys
import unittest
from unittest import mock

from tests.helpers import (
    OS_CALLS, ForceNoDirFd, PatchedOs, TempDirTest, bundle, called_by_splitfile, files_of, leftovers, make_tree, run,
    snapshot, splitfile,
)
from tests.test_names import UNIVERSAL, WINDOWS_ONLY


class HostileNamesEndToEndTest(TempDirTest):
    def test_hostile_names_change_nothing_through_the_command_line(self) -> None:
        cases = [(n, False) for n, _ in UNIVERSAL if n and "\n" not in n and "\r" not in n]
        cases += [(n, True) for n, _ in WINDOWS_ONLY]
        self.assertGreaterEqual(len(cases), 30)
        if os.environ.get("SPLITFILE_REPORT"):
            print(f"\nhostile names end to end: {len(cases)}")
        make_tree(self.outer, {"dest/keep.txt": b"keep\n", "etc/passwd": b"root\n", "x": b"x\n"})
        before = snapshot(self.outer)
        for name, portable in cases:
            with self.subTest(name=name):
                data = bundle(("fine.txt", b"ok\n"), (name, b"evil\n"))
                argv = [self.write_bundle(data), "-o", self.dest, "-f"] + (["--portable"] if portable else [])
                result = run(argv)
                self.assertEqual(result.code, 1, result)
                self.assertIn("invalid name", result.err)
                self.assertNotIn("\x1b", result.err)
                self.assertEqual(result.out, b"")
                self.assertUnchanged(before)


class TrapTest(TempDirTest):
    """Traps planted inside DIR, with and without -f."""

    def plant(self) -> None:
        make_tree(self.outer, {"secret/file.txt": b"secret\n", "dest/ok.txt": b"ok\n", "dest/sub/y": b"y\n"})
        os.symlink(os.path.join(self.outer, "secret"), os.path.join(self.dest, "to_dir"))
        os.symlink(os.path.join(self.outer, "secret", "file.txt"), os.path.join(self.dest, "to_file"))
        os.symlink(os.path.join(self.outer, "secret", "nothing"), os.path.join(self.dest, "dangling"))
        os.symlink("sub", os.path.join(self.dest, "inside"))
        os.link(os.path.join(self.outer, "secret", "file.txt"), os.path.join(self.dest, "hard"))
        os.mkfifo(os.path.join(self.dest, "fifo"))
        os.mkdir(os.path.join(self.dest, "adir"))

    def test_links_used_as_folders_are_refused_with_or_without_force(self) -> None:
        self.plant()
        before = snapshot(self.outer)
        for name in ("to_dir/file.txt", "to_dir/new", "dangling/x", "inside/y", "inside/new", "ok.txt/x",
                     "fifo/x", "hard/x"):
            for flags in ([], ["-f"]):
                with self.subTest(name=name, flags=flags):
                    result = run([self.write_bundle(bundle((name, b"evil\n"))), "-o", self.dest, *flags])
                    self.assertEqual(result.code, 1)
                    self.assertIn("not a real directory", result.err)
                    self.assertUnchanged(before)

    def test_special_targets_are_refused_even_with_force(self) -> None:
        self.plant()
        before = snapshot(self.outer)
        for name, word in (("fifo", "FIFO"), ("adir", "directory"), ("sub", "directory")):
            for flags in ([], ["-f"]):
                with self.subTest(name=name, flags=flags):
                    result = run([self.write_bundle(bundle((name, b"evil\n"))), "-o", self.dest, *flags])
                    self.assertEqual(result.code, 1)
                    self.assertIn(word, result.err)
                    self.assertUnchanged(before)

    def test_links_at_targets_conflict_and_force_replaces_only_the_link(self) -> None:
        self.plant()
        before = snapshot(self.outer)
        names = ("to_dir", "to_file", "dangling", "inside", "hard")
        data = self.write_bundle(bundle(*[(n, b"evil\n") for n in names]))
        result = run([data, "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertEqual(len(result.err.splitlines()), len(names))
        self.assertUnchanged(before)
        result = run([data, "-o", self.dest, "-f"])
        self.assertEqual(result.code, 0, result.err)
        after = snapshot(self.outer)
        for name in names:
            self.assertEqual(after[os.path.join("dest", name)][:2], ("file", b"evil\n"))
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        self.assertEqual(changed, {os.path.join("dest", n) for n in names})
        self.assertEqual(files_of(os.path.join(self.outer, "secret")), {"file.txt": b"secret\n"})
        self.assertEqual(leftovers(self.outer), [])


class TrapNoDirFdTest(ForceNoDirFd, TrapTest):
    pass


ERRNOS = (errno.ENOSPC, errno.EIO, errno.EACCES)
OPS = OS_CALLS


class _Faults(PatchedOs):
    """Counts calls to os functions, making call number `at` of `op` raise `error`."""

    def __init__(self, op: str | None = None, at: int = 0, error: BaseException | None = None) -> None:
        super().__init__()
        self.op, self.at, self.error = op, at, error
        self.calls = {name: 0 for name in OPS}

    def _wrap(self, name: str, real):
        def call(*args, **kwargs):
            if not called_by_splitfile():
                return real(*args, **kwargs)
            self.calls[name] += 1
            if name == self.op and self.calls[name] == self.at:
                raise self.error
            return real(*args, **kwargs)
        return call


class FaultInjectionTest(TempDirTest):
    """Every filesystem call fails once, at each point a real run makes it."""

    FILES = {"dest/old.txt": b"old\n", "dest/same.txt": b"same\n", "dest/pkg/a.py": b"a = 0\n",
             "elsewhere/target": b"elsewhere\n"}
    BUNDLE = bundle(("old.txt", b"new\n"), ("same.txt", b"same\n"), ("pkg/a.py", b"a = 1\n"),
                    ("pkg/sub/deep/b.py", b"b = 2\n"), ("link", b"was a link\n"), ("c.txt", b"c\n" * 5000))

    def fresh(self, tag: str) -> tuple[str, str]:
        outer = os.path.join(self.tmp, tag)
        make_tree(outer, self.FILES)
        os.symlink(os.path.join(outer, "elsewhere", "target"), os.path.join(outer, "dest", "link"))
        return outer, os.path.join(outer, "dest")

    def test_every_failing_call_leaves_everything_as_it_was(self) -> None:
        data = self.write_bundle(self.BUNDLE)
        argv = [data, "-f", "--sync", "-o"]
        outer, dest = self.fresh("reference")
        with _Faults() as counter:
            result = run(argv + [dest])
        self.assertEqual(result.code, 0, result.err)
        success = snapshot(dest)
        calls = {op: n for op, n in counter.calls.items() if n}
        for op in ("open", "write", "close", "mkdir", "link", "unlink", "replace", "fsync", "fchmod"):
            self.assertIn(op, calls)
        tried = 0
        for op, count in calls.items():
            for at in range(1, count + 1):
                for error in [OSError(code, os.strerror(code)) for code in ERRNOS] + [KeyboardInterrupt()]:
                    tried += 1
                    label = errno.errorcode.get(getattr(error, "errno", None) or 0, type(error).__name__)
                    with self.subTest(op=op, at=at, error=label):
                        outer, dest = self.fresh(f"{op}-{at}-{label}")
                        before = snapshot(outer)
                        with _Faults(op, at, error):
                            result = run(argv + [dest])
                        self.assertNotIn("Traceback", result.err)
                        if result.code == 0:
                            # A fault after the last rename, or one the tool absorbed:
                            # the run succeeded, and any leftover is named in a warning.
                            for path in leftovers(dest):
                                self.assertIn(os.path.basename(path), result.err)
                            after = {k: v for k, v in snapshot(dest).items() if ".splitfile-" not in k}
                            self.assertEqual(after.keys(), success.keys())
                            for rel, entry in success.items():
                                self.assertEqual(after[rel][:2], entry[:2])
                            continue
                        expected = 130 if isinstance(error, KeyboardInterrupt) else 1
                        self.assertEqual(result.code, expected, result.err)
                        self.assertEqual(snapshot(outer), before)
                        self.assertEqual(leftovers(outer), [])
        self.assertGreater(tried, 250)  # 4 failures at each of some 80 calls
        if os.environ.get("SPLITFILE_REPORT"):
            print(f"\n{type(self).__name__}: {tried} injected faults over {len(calls)} operations: {calls}")


class FaultInjectionNoDirFdTest(ForceNoDirFd, FaultInjectionTest):
    pass


class FaultDuringRollbackTest(TempDirTest):
    """rmdir runs only while rolling back: a fault there is reported, never a traceback."""

    def test_a_folder_that_cannot_be_removed_is_named(self) -> None:
        data = bundle(("new/deep/a.txt", b"a\n")) + b"<<<FILE never/closed>>>\n"
        dest = os.path.join(self.outer, "dest")
        with _Faults("rmdir", 1, OSError(errno.EBUSY, "Device or resource busy")):
            result = run([self.write_bundle(data), "-o", dest])
        # The run fails for its own reason; the rest of the rollback still ran.
        self.assertEqual(result.code, 1)
        self.assertNotIn("Traceback", result.err)
        self.assertIn("could not remove folder 'never': ", result.err)
        self.assertIn("never closed", result.err)
        self.assertEqual(leftovers(self.outer), [])
        self.assertEqual(os.listdir(dest), ["never"])  # new/deep and new were removed

    def test_an_interrupt_during_the_rollback_has_the_same_step_undone_again(self) -> None:
        # As a library's Ctrl-C would: the step is not skipped, so nothing is left.
        data = bundle(("new/deep/a.txt", b"a\n")) + b"<<<FILE never/closed>>>\n"
        dest = os.path.join(self.outer, "fresh")
        before = snapshot(self.outer)
        with _Faults("rmdir", 1, KeyboardInterrupt()):
            result = run([self.write_bundle(data), "-o", dest])
        self.assertEqual((result.code, result.err), (1, "splitfile: error: bundle.txt:4: block 'never/closed' is never"
                                                        " closed: no '<<<END never/closed>>>' line follows\n"))
        self.assertUnchanged(before)


@unittest.skipUnless(os.path.isdir("/proc/self/fd"), "needs /proc")
class DescriptorLeakTest(TempDirTest):
    """Found by the 100,000-case fuzz campaign: failed runs leaked a descriptor per folder made."""

    def test_no_run_leaves_a_descriptor_open(self) -> None:
        cases = {
            "ok": bundle(("a/b/c", b"x\n"), ("d", b"")),
            "bad name after folders": bundle(("a/b/c", b"x\n"), ("../x", b"")),
            "unclosed after folders": bundle(("a/b/c", b"x\n")) + b"<<<FILE e/f>>>\n",
            "conflict": bundle(("a/b/c", b"y\n")),
        }
        for title, data in cases.items():
            with self.subTest(title):
                path = self.write_bundle(data)
                open_before = len(os.listdir("/proc/self/fd"))
                for i in range(5):
                    dest = os.path.join(self.outer, f"{title}-{i}")
                    make_tree(dest, {"a/b/c": b"z\n"} if title == "conflict" else {})
                    run([path, "-o", dest])
                    run([path, "-n", "-o", dest])
                    run([path, "--diff", "-o", dest])
                self.assertEqual(len(os.listdir("/proc/self/fd")), open_before)


class SignalAfterCommitTest(TempDirTest):
    def test_a_signal_during_the_renames_rolls_back(self) -> None:
        import signal
        make_tree(self.dest, {"a": b"old\n"})
        before = snapshot(self.outer)
        real_link = os.link

        def link_then_signal(*args, **kwargs):
            real_link(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGTERM)

        with mock.patch.object(os, "link", link_then_signal):
            result = run([self.write_bundle(bundle(("a", b"new\n"), ("b", b"b\n"))), "-f", "-o", self.dest])
        self.assertEqual(result.code, 128 + signal.SIGTERM)
        self.assertUnchanged(before)

    def test_a_signal_after_the_last_rename_does_not_turn_success_into_failure(self) -> None:
        import signal
        make_tree(self.dest, {"a": b"old\n"})
        real_unlink = os.unlink

        def unlink_with_signal(path, *args, **kwargs):
            if str(path).endswith(".old"):  # removing the backup: after the last rename
                os.kill(os.getpid(), signal.SIGINT)
            return real_unlink(path, *args, **kwargs)

        with mock.patch.object(os, "unlink", unlink_with_signal):
            result = run([self.write_bundle(bundle(("a", b"new\n"))), "-f", "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(files_of(self.dest), {"a": b"new\n"})
        self.assertEqual(leftovers(self.dest), [])


class AppearedMeanwhileTest(TempDirTest):
    def test_even_in_a_folder_this_run_made_a_planted_file_is_not_replaced(self) -> None:
        dest = os.path.join(self.outer, "fresh")
        real_write = os.write
        planted = []

        def write_and_plant(fd, data):
            if not planted:  # DIR exists by now: this run made it
                make_tree(dest, {"a": b"someone else's\n"})
                planted.append(True)
            return real_write(fd, data)

        with mock.patch.object(os, "write", write_and_plant):
            result = run([self.write_bundle(bundle(("a", b"mine\n"), ("b", b"b\n"))), "-o", dest])
        self.assertEqual(result.code, 1)
        self.assertIn("'a': something appeared there during the run", result.err)
        self.assertEqual(files_of(dest), {"a": b"someone else's\n"})
        self.assertEqual(leftovers(self.outer), [])

    def test_a_file_that_appears_before_the_rename_is_not_replaced(self) -> None:
        real_write = os.write
        planted = []

        def write_and_plant(fd, data):
            if not planted:
                make_tree(self.dest, {"a": b"someone else's\n"})
                planted.append(True)
            return real_write(fd, data)

        with mock.patch.object(os, "write", write_and_plant):
            result = run([self.write_bundle(bundle(("a", b"mine\n"), ("b", b"b\n"))), "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("appeared there during the run", result.err)
        self.assertEqual(files_of(self.dest), {"a": b"someone else's\n"})
        self.assertEqual(leftovers(self.dest), [])


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(sys.platform.startswith("linux"), "renameat2 is Linux's")
class ManyFilesRenameTest(TempDirTest):
    """With many new files, renameat2(RENAME_NOREPLACE) replaces link + unlink."""

    DATA = bundle(*[(f"d{i % 7}/f{i}.txt", b"%d\n" % i) for i in range(splitfile.MANY_FILES + 10)])

    def counting(self, calls: list):
        real = splitfile._rename_noreplace

        def load():
            rename = real()
            self.assertIsNotNone(rename)

            def counted(folder, old, new):
                calls.append(new)
                return rename(folder, old, new)
            return counted
        return mock.patch.object(splitfile, "_rename_noreplace", load)

    def test_many_new_files_are_renamed_into_place_without_links(self) -> None:
        calls: list = []
        with self.counting(calls), mock.patch.object(os, "link", side_effect=AssertionError("link used")):
            result = run([self.write_bundle(self.DATA), "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(len(calls), splitfile.MANY_FILES + 10)
        self.assertEqual(len(files_of(self.dest)), splitfile.MANY_FILES + 10)
        self.assertEqual(files_of(self.dest)["d3/f10.txt"], b"10\n")
        self.assertEqual(leftovers(self.dest), [])

    def test_a_name_taken_meanwhile_is_refused_and_all_rolled_back(self) -> None:
        calls: list = []
        real_write = os.write
        planted: list = []

        def write_and_plant(fd, data):
            planted.append(True)
            if len(planted) == splitfile.MANY_FILES + 10:  # the last body: all are staged
                make_tree(self.dest, {"d5/f12.txt": b"theirs\n"})
            return real_write(fd, data)

        with self.counting(calls), mock.patch.object(os, "write", write_and_plant):
            result = run([self.write_bundle(self.DATA), "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("'d5/f12.txt': something appeared there during the run", result.err)
        self.assertEqual(files_of(self.dest), {"d5/f12.txt": b"theirs\n"})
        self.assertEqual(leftovers(self.dest), [])

    def test_a_filesystem_without_it_falls_back_to_links(self) -> None:
        def refuse(folder, old, new):
            raise OSError(errno.EINVAL, "Invalid argument")

        with mock.patch.object(splitfile, "_rename_noreplace", lambda: refuse):
            result = run([self.write_bundle(self.DATA), "-o", self.dest])
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(len(files_of(self.dest)), splitfile.MANY_FILES + 10)
        self.assertEqual(leftovers(self.dest), [])


class NoHardLinksTest(TempDirTest):
    """Filesystems without hard links (FAT, some network mounts): link fails with EPERM or ENOTSUP."""

    def test_new_and_replaced_files_fall_back_to_renames(self) -> None:
        for code in (errno.EPERM, errno.ENOTSUP):
            with self.subTest(errno=errno.errorcode[code]):
                dest = os.path.join(self.outer, errno.errorcode[code])
                make_tree(dest, {"old.txt": b"old\n"})
                data = bundle(("old.txt", b"new\n"), ("d/new.txt", b"n\n"))
                with mock.patch.object(os, "link", side_effect=OSError(code, os.strerror(code))):
                    result = run([self.write_bundle(data), "-f", "-o", dest])
                self.assertEqual(result.code, 0, result.err)
                self.assertEqual(files_of(dest), {"old.txt": b"new\n", "d/new.txt": b"n\n"})
                self.assertEqual(leftovers(dest), [])

    def test_a_failure_after_moving_the_old_file_aside_puts_it_back(self) -> None:
        make_tree(self.dest, {"a": b"old a\n", "b": b"old b\n"})
        before = snapshot(self.outer)
        real_replace = os.replace
        calls = []

        def replace_then_fail(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:  # b's new file over b, after b was moved aside
                raise OSError(errno.EIO, "Input/output error")
            return real_replace(*args, **kwargs)

        with mock.patch.object(os, "link", side_effect=OSError(errno.EPERM, "Operation not permitted")), \
                mock.patch.object(os, "replace", replace_then_fail):
            result = run([self.write_bundle(bundle(("a", b"new a\n"), ("b", b"new b\n"))), "-f", "-o", self.dest])
        self.assertEqual(result.code, 1)
        self.assertIn("cannot write 'b': Input/output error", result.err)
        after = snapshot(self.outer)
        self.assertEqual({k: v[:2] for k, v in after.items()}, {k: v[:2] for k, v in before.items()})
        self.assertEqual(leftovers(self.outer), [])
