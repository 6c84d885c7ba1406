"""Signals at any moment, through real processes (SPEC 3.2): complete rollback or complete success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

from tests.helpers import SCRIPT, TempDirTest, bundle, files_of, inherited_ignored, leftovers, make_tree, snapshot

POSIX = os.name == "posix"
SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
    return False


@unittest.skipUnless(POSIX, "POSIX signals")
class SignalMomentTest(TempDirTest):
    """The moment the last file is in place, the run has succeeded: no signal undoes it or kills it."""

    COUNT = 150

    def test_a_signal_once_the_last_file_is_in_place_keeps_the_success(self) -> None:
        old = {f"f{i:03}": b"old\n" for i in range(self.COUNT)}
        new = {name: b"new\n" for name in old}
        data = bundle(*new.items())
        last = os.path.join(self.dest, f"f{self.COUNT - 1:03}")
        hits = 0
        for name, code in SIGNALS.items():
            for attempt in range(3):
                with self.subTest(signal=name, attempt=attempt):
                    make_tree(self.dest, old)
                    proc = subprocess.Popen([sys.executable, SCRIPT, "-f", "-v", "-o", self.dest],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    assert proc.stdin is not None
                    proc.stdin.write(data)
                    proc.stdin.close()
                    # The last file holds the new body: every file is in place.
                    self.assertTrue(wait_for(lambda: _read(last) == b"new\n"))
                    try:
                        proc.send_signal(getattr(signal, name))
                        hits += proc.poll() is None
                    except ProcessLookupError:
                        pass
                    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
                    proc.wait(timeout=30)
                    proc.stdout.close()  # type: ignore[union-attr]
                    proc.stderr.close()  # type: ignore[union-attr]
                    self.assertEqual(proc.returncode, 0, err)
                    self.assertNotIn(b"Traceback", err)
                    self.assertEqual(files_of(self.dest), new)
                    self.assertEqual(out.count(b"\n"), self.COUNT)
                    self.assertEqual(leftovers(self.dest), [])
        self.assertGreater(hits, 0)  # some signal did arrive while the process ran


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


@unittest.skipUnless(POSIX, "POSIX signals")
class SignalBurstTest(TempDirTest):
    """A burst of signals at any moment of a run: rollback or success, never a leftover or a traceback."""

    def run_with_burst(self, signum: int, delay: float, pause: float, tail: bytes = b"") -> tuple[int, bytes]:
        if inherited_ignored(signum):  # a child keeps it ignored, as it must (SPEC 3.2)
            self.skipTest(f"{signum!r} is ignored in this test run (a background job?)")
        make_tree(self.dest, {"old.txt": b"old\n"})
        before = snapshot(self.outer)
        files = [("old.txt", b"new\n")] + [(f"d{i % 10}/f{i}", b"x\n" * 20) for i in range(300)]
        data = bundle(*files) + tail
        proc = subprocess.Popen([sys.executable, SCRIPT, "-f", "-o", self.dest], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        first = len(bundle(files[0]))
        proc.stdin.write(data[:first])
        proc.stdin.flush()
        self.assertTrue(wait_for(lambda: leftovers(self.dest) != []))  # the handlers are in place
        stop = threading.Event()

        def burst() -> None:
            time.sleep(delay)
            while not stop.is_set():
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    return
                if pause:
                    time.sleep(pause)

        thread = threading.Thread(target=burst)
        thread.start()
        try:
            try:
                proc.stdin.write(data[first:])
                proc.stdin.close()
            except BrokenPipeError:
                pass
            err = proc.stderr.read() if proc.stderr else b""
            proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        finally:
            stop.set()
            thread.join()
        self.assertNotIn(b"Traceback", err)
        self.assertEqual(leftovers(self.outer), [])
        if proc.returncode == 0:
            self.assertFalse(tail)
            self.assertEqual(files_of(self.dest)["old.txt"], b"new\n")
            self.assertEqual(len(files_of(self.dest)), 301)
        else:
            self.assertIn(proc.returncode, (128 + signum, 1) if tail else (128 + signum,), err)
            self.assertEqual(snapshot(self.outer), before)
        return proc.returncode, err

    def test_sigterm_in_a_tight_loop_at_every_moment(self) -> None:
        codes = []
        for delay in (0.0, 0.005, 0.02, 0.05, 0.1):
            with self.subTest(delay=delay):
                codes.append(self.run_with_burst(signal.SIGTERM, delay, 0)[0])
        self.assertIn(143, codes)

    def test_a_burst_while_a_failed_run_rolls_back_leaves_nothing(self) -> None:
        codes = set()
        for delay in (0.02, 0.06):
            with self.subTest(delay=delay):
                codes.add(self.run_with_burst(signal.SIGTERM, delay, 0, tail=b"<<<FILE never>>>\n")[0])
        self.assertTrue(codes <= {1, 143}, codes)

    def test_sigint_at_a_human_rate_and_sighup_bursts(self) -> None:
        for signum, pause in ((signal.SIGINT, 0.05), (signal.SIGINT, 0.001), (signal.SIGHUP, 0.0005)):
            for delay in (0.0, 0.03):
                with self.subTest(signal=signum, pause=pause, delay=delay):
                    self.run_with_burst(signum, delay, pause)


@unittest.skipUnless(POSIX, "POSIX signals")
class IgnoredSignalTest(TempDirTest):
    """A signal the parent set to SIG_IGN (nohup, background jobs) stays ignored."""

    def test_an_ignored_signal_does_not_stop_the_run(self) -> None:
        data = bundle(("a", b"a\n"), ("b/c", b"c\n"))
        for name in SIGNALS:
            with self.subTest(signal=name):
                dest = os.path.join(self.outer, name)
                signum = getattr(signal, name)
                proc = subprocess.Popen([sys.executable, SCRIPT, "-o", dest], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN))
                assert proc.stdin is not None
                proc.stdin.write(data[:20])
                proc.stdin.flush()
                self.assertTrue(wait_for(lambda: leftovers(self.outer) != []))
                for _ in range(5):
                    proc.send_signal(signum)
                    time.sleep(0.01)
                out, err = proc.communicate(data[20:], timeout=30)
                self.assertEqual(proc.returncode, 0, err)
                self.assertEqual(files_of(dest), {"a": b"a\n", "b/c": b"c\n"})


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(POSIX, "POSIX signals")
class SetUpSignalTest(TempDirTest):
    def test_a_signal_as_the_handlers_go_in_is_an_interrupt_not_a_traceback(self) -> None:
        from unittest import mock

        from tests.helpers import run

        path = self.write_bundle(bundle(("a.txt", b"a\n")))
        before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        real_signal = signal.signal

        def install_then_interrupt(signum: int, handler: object) -> object:
            previous = real_signal(signum, handler)  # type: ignore[arg-type]
            if signum == signal.SIGHUP and callable(handler):  # the last handler is in: Ctrl-C lands now
                os.kill(os.getpid(), signal.SIGINT)
            return previous

        with mock.patch.object(signal, "signal", install_then_interrupt):
            result = run([path, "-o", self.dest])
        self.assertEqual((result.code, result.err), (130, "splitfile: error: interrupted; nothing was written\n"))
        self.assertEqual(os.listdir(self.dest), [])
        self.assertEqual({signum: signal.getsignal(signum) for signum in before}, before)
