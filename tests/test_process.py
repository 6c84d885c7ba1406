"""Real processes: pipes, terminals, signals, a full disk, a racing attacker."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
import unittest

from tests.helpers import (
    SCRIPT, TempDirTest, bundle, files_of, inherited_ignored, leftovers, make_tree, run, run_process, snapshot,
)

POSIX = os.name == "posix"


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


class PipeTest(TempDirTest):
    def test_a_piped_bundle_splits_and_exit_codes_are_real(self) -> None:
        data = bundle(("a/b.txt", b"piped\n"))
        done = run_process(["-o", self.dest, "-v"], stdin=data)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"new a/b.txt\n", b""))
        bad = run_process(["-o", self.dest], stdin=b"<<<FILE x>>>\n")
        self.assertEqual(bad.returncode, 1)
        self.assertEqual(bad.stderr, b"splitfile: error: <stdin>:1: block 'x' is never closed: "
                                     b"no '<<<END x>>>' line follows\n")
        usage = run_process(["--bogus"])
        self.assertEqual(usage.returncode, 2)
        self.assertIn(b"usage:", usage.stderr)

    def test_no_traceback_for_hostile_input(self) -> None:
        for data in (b"\xff\xfe\x00", b"<<<FILE \xff\xfe>>>\n<<<END \xff\xfe>>>\n", bundle(("a\x00b", b"")),
                     b"<<<FILE " + b"a/" * 3000 + b"b>>>\n<<<END " + b"a/" * 3000 + b"b>>>\n", b"\x00" * 1000):
            with self.subTest(data=data[:20]):
                done = run_process(["-o", self.dest], stdin=data)
                self.assertEqual(done.returncode, 1)
                self.assertNotIn(b"Traceback", done.stderr)
                self.assertTrue(done.stderr.startswith(b"splitfile: error: "))

    def test_list_into_a_closed_pipe_is_quiet(self) -> None:
        data = bundle(*[(f"f{i}", b"") for i in range(20000)])
        path = self.write_bundle(data)
        shell = f"{sys.executable} {SCRIPT} -l {path} | head -1"
        done = subprocess.run(shell, shell=True, capture_output=True, timeout=60)
        self.assertEqual(done.stdout, b"f0\n")
        self.assertNotIn(b"Traceback", done.stderr)


@unittest.skipUnless(POSIX, "needs a pseudo-terminal")
class TerminalTest(TempDirTest):
    def test_a_terminal_on_stdin_is_a_usage_error_not_a_hang(self) -> None:
        leader, follower = pty.openpty()
        try:
            done = subprocess.run([sys.executable, SCRIPT, "-o", self.dest], stdin=follower,
                                  capture_output=True, timeout=30)
        finally:
            os.close(leader)
            os.close(follower)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"standard input is a terminal", done.stderr)


@unittest.skipUnless(POSIX, "POSIX signals")
class SignalTest(TempDirTest):
    """A signal mid-run rolls everything back; bodies are staged as they arrive."""

    def start_half_bundle(self) -> subprocess.Popen:
        make_tree(self.dest, {"old.txt": b"old\n"})
        proc = subprocess.Popen([sys.executable, SCRIPT, "-f", "-o", self.dest], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(bundle(("old.txt", b"new\n"), ("n/new.txt", b"x\n")) + b"<<<FILE n/late.txt>>>\nbody\n")
        proc.stdin.flush()
        # The open block's body is staged before the input ends (SPEC 5).
        staged = wait_for(lambda: len(leftovers(self.dest)) >= 2)
        self.assertTrue(staged, "bodies were not staged as they arrived")
        return proc

    def test_each_signal_rolls_back_with_its_exit_status(self) -> None:
        for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)):
            with self.subTest(signal=signum):
                if inherited_ignored(signum):  # a child keeps it ignored, as it must (SPEC 3.2)
                    self.skipTest(f"{signum!r} is ignored in this test run (a background job?)")
                before = None
                proc = self.start_half_bundle()
                before = {"old.txt": b"old\n"}
                proc.send_signal(signum)
                # Stdin stays open until the child is gone: an end of input seen first would fail the run
                # (exit 1), and a signal after the outcome is decided rightly changes nothing (SPEC 3.2).
                proc.wait(timeout=30)
                out, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, code, err)
                self.assertIn(b"interrupted; nothing was written", err)
                self.assertNotIn(b"Traceback", err)
                self.assertEqual(files_of(self.dest), before)
                self.assertEqual(sorted(os.listdir(self.dest)), ["old.txt"])

    def test_sigkill_leaves_no_partial_file_under_a_real_name(self) -> None:
        proc = self.start_half_bundle()
        proc.kill()
        proc.communicate(timeout=30)
        self.assertEqual(files_of(self.dest)["old.txt"], b"old\n")
        real = [p for p in files_of(self.dest) if ".splitfile-" not in p]
        self.assertEqual(real, ["old.txt"])


@unittest.skipUnless(POSIX, "resource limits")
class FullDiskTest(TempDirTest):
    def test_a_file_size_limit_acts_as_a_full_disk(self) -> None:
        import resource

        make_tree(self.dest, {"a": b"old\n"})
        before = snapshot(self.outer)
        path = self.write_bundle(bundle(("a", b"new\n"), ("small", b"s\n"), ("big", (b"x" * 99 + b"\n") * 20000)))

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

        done = subprocess.run([sys.executable, SCRIPT, path, "-f", "-o", self.dest], capture_output=True,
                              timeout=60, preexec_fn=limit)
        self.assertEqual(done.returncode, 1)
        self.assertIn(b"cannot write 'big': File too large", done.stderr)
        self.assertNotIn(b"Traceback", done.stderr)
        self.assertEqual(snapshot(self.outer), before)
        self.assertEqual(leftovers(self.outer), [])


@unittest.skipUnless(POSIX, "dir_fd walk")
class RaceTest(TempDirTest):
    def test_a_folder_swapped_for_a_symlink_mid_run_is_never_followed(self) -> None:
        secret = os.path.join(self.outer, "secret")
        os.mkdir(secret)
        before_secret = snapshot(secret)
        body = b"y" * 4095 + b"\n"
        data = b"".join(bundle((f"d/f{i}", body * 16)) for i in range(400))
        path = self.write_bundle(data)
        stop = threading.Event()
        swaps = [0]

        def attacker() -> None:
            d = os.path.join(self.dest, "d")
            aside = os.path.join(self.dest, "aside")
            while not stop.is_set():
                try:
                    os.rename(d, aside)
                    os.symlink(secret, d)
                    swaps[0] += 1
                    time.sleep(0.0005)
                    os.unlink(d)
                    os.rename(aside, d)
                except OSError:
                    pass

        for _ in range(5):
            thread = threading.Thread(target=attacker)
            thread.start()
            try:
                result = run([path, "-f", "-o", self.dest])
            finally:
                stop.set()
                thread.join()
                stop.clear()
            self.assertIn(result.code, (0, 1), result.err)
            self.assertNotIn("Traceback", result.err)
            self.assertEqual(snapshot(secret), before_secret)
        self.assertGreater(swaps[0], 0)


if __name__ == "__main__":
    unittest.main()
