"""Odd standard streams and hostile sources, through real processes: nothing lost, no traceback, honest exits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

from tests.helpers import SCRIPT, TempDirTest, bundle, files_of, splitfile

DATA = bundle(("a.txt", b"alpha\n"), ("sub/b.txt", b"beta\n"))
NEAR_MISS = b"<<FILE typo>>>\n"  # a warning, never a failure
HAVE_DEV_FULL = os.path.exists("/dev/full")


def close_fd(fd: int):  # type: ignore[no-untyped-def]
    return lambda: os.close(fd)


class StreamTest(TempDirTest):
    def spawn(self, argv: list[str], stdin: bytes = b"", **kw: object) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, SCRIPT, *argv], input=stdin, timeout=60, **kw)  # type: ignore[call-overload]
        for stream in (done.stderr, done.stdout):
            if isinstance(stream, bytes):
                self.assertNotIn(b"Traceback", stream)
        return done  # type: ignore[no-any-return]

    def test_a_closed_stdout_fails_each_printing_mode_cleanly(self) -> None:
        self.write_bundle(DATA)
        for argv in (["bundle.txt", "-l"], ["bundle.txt", "-n", "-o", self.dest], ["bundle.txt", "-p", "a.txt"],
                     ["bundle.txt", "--diff", "-o", self.dest], ["--pack", "bundle.txt"]):
            with self.subTest(argv=argv):
                done = self.spawn(argv, stderr=subprocess.PIPE, preexec_fn=close_fd(1))
                self.assertEqual(done.returncode, 1)
                self.assertEqual(done.stderr, b"splitfile: error: cannot write to standard output: it is closed\n")
        self.assertEqual(os.listdir(self.dest), [])

    def test_status_lines_that_cannot_be_printed_after_the_commit_are_a_warning_with_exit_0(self) -> None:
        self.write_bundle(DATA)
        outs = {"closed": {"preexec_fn": close_fd(1)}}
        if HAVE_DEV_FULL:
            outs["full"] = {"stdout": open("/dev/full", "wb")}  # noqa: SIM115 - closed by the test's end
        for label, how in outs.items():
            with self.subTest(stdout=label):
                out = os.path.join(self.tmp, "out-" + label)
                done = self.spawn(["bundle.txt", "-v", "-o", out], stderr=subprocess.PIPE, **how)
                self.assertEqual(done.returncode, 0)
                self.assertEqual(files_of(out), {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"})
                self.assertRegex(done.stderr.decode(), r"^splitfile: warning: every file is in place, but"
                                 r" the status lines could not be printed: .+\n$")
                if "stdout" in how:
                    how["stdout"].close()  # type: ignore[attr-defined]

    def test_a_full_stdout_fails_a_listing(self) -> None:
        if not HAVE_DEV_FULL:
            self.skipTest("no /dev/full here")
        self.write_bundle(DATA)
        with open("/dev/full", "wb") as full:
            done = self.spawn(["bundle.txt", "-l"], stdout=full, stderr=subprocess.PIPE)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr, b"splitfile: error: cannot write to standard output: No space left on device\n")

    def test_a_reader_that_goes_away_does_not_fail_a_finished_run(self) -> None:
        self.write_bundle(bundle(*[(f"f{i}.txt", b"x\n") for i in range(2000)]))
        proc = subprocess.Popen([sys.executable, SCRIPT, "bundle.txt", "-v", "-o", self.dest],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| true`
        err = proc.stderr.read()
        proc.stderr.close()
        self.assertEqual(proc.wait(60), 0)
        self.assertEqual(len(os.listdir(self.dest)), 2000)
        self.assertEqual(err, b"splitfile: warning: every file is in place, but the status lines could not be printed:"
                              b" Broken pipe\n")

    def test_warnings_never_fail_a_run_whatever_stderr_is(self) -> None:
        self.write_bundle(NEAR_MISS + DATA)
        hows: dict[str, dict[str, object]] = {"closed": {"preexec_fn": close_fd(2)}}
        if HAVE_DEV_FULL:
            hows["full"] = {"stderr": open("/dev/full", "wb")}  # noqa: SIM115
        for label, how in hows.items():
            with self.subTest(stderr=label):
                out = os.path.join(self.tmp, "out-" + label)
                done = self.spawn(["bundle.txt", "-v", "-o", out], stdout=subprocess.PIPE, **how)
                self.assertEqual(done.returncode, 0)
                self.assertEqual(done.stdout, b"new a.txt\nnew sub/b.txt\n")
                self.assertEqual(files_of(out), {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"})
                if "stderr" in how:
                    how["stderr"].close()  # type: ignore[attr-defined]

    def test_a_non_blocking_stdin_is_read_to_its_real_end(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)  # as asyncio or node leave it
        proc = subprocess.Popen([sys.executable, SCRIPT, "-o", self.dest], stdin=read_end,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(read_end)
        os.write(write_end, bundle(("first.txt", b"1\n")))
        time.sleep(0.7)  # the child has read the first block and found nothing more yet
        os.write(write_end, bundle(("second.txt", b"2\n")))
        os.close(write_end)
        out, err = proc.communicate(timeout=60)
        self.assertEqual((proc.returncode, err), (0, b""))
        self.assertEqual(files_of(self.dest), {"first.txt": b"1\n", "second.txt": b"2\n"})


class NonBlockingStdoutTest(TempDirTest):
    def test_a_non_blocking_stdout_read_slowly_gets_every_byte(self) -> None:
        body = b"".join(b"line %d of a long file\n" % i for i in range(60000))
        self.write_bundle(bundle(("big.txt", body)))
        self.write_bundle(body, name="big.txt")
        wanted = {"-p": body, "--pack": splitfile.format([("big.txt", body)])}
        for argv in (["bundle.txt", "-p", "big.txt"], ["--pack", "big.txt"]):
            with self.subTest(argv=argv):
                read_end, write_end = os.pipe()
                os.set_blocking(write_end, False)  # as a parent's event loop may leave it
                proc = subprocess.Popen([sys.executable, SCRIPT, *argv], stdout=write_end, stderr=subprocess.PIPE)
                os.close(write_end)
                time.sleep(0.5)  # the pipe fills and the child finds it full
                chunks = []
                while True:
                    data = os.read(read_end, 1 << 16)
                    if not data:
                        break
                    chunks.append(data)
                os.close(read_end)
                _, err = proc.communicate(timeout=60)
                self.assertEqual((proc.returncode, err), (0, b""))
                self.assertEqual(b"".join(chunks), wanted[argv[-2] if argv[0] == "bundle.txt" else argv[0]])


class SourceInMessagesTest(TempDirTest):
    def test_a_hostile_bundle_file_name_cannot_forge_a_line(self) -> None:
        name = "b\n\x1b[31msplitfile: warning: fine.txt"
        self.write_bundle(b"<<<FILE x>>>\n", name=name)
        done = subprocess.run([sys.executable, SCRIPT, name, "-o", self.dest], capture_output=True, timeout=60)
        self.assertEqual(done.returncode, 1)
        lines = done.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(r"splitfile: error: 'b\x0a\x1b[31msplitfile: warning: fine.txt':1: "))
        self.assertNotIn(b"\x1b", done.stderr)

    def test_an_argument_a_usage_error_names_cannot_forge_a_line(self) -> None:
        # A glob can match a file whose name holds a newline and an escape.
        stray = "x\nsplitfile: warning: forged \x1b[31mred"
        self.write_bundle(bundle(("a", b"a\n")))
        done = subprocess.run([sys.executable, SCRIPT, "bundle.txt", stray, "-o", self.dest], capture_output=True)
        self.assertEqual(done.returncode, 2)
        lines = done.stderr.decode().splitlines()
        self.assertEqual(lines[-1], r"splitfile: error: unrecognized arguments: x\x0asplitfile: warning: forged \x1b[31mred")
        self.assertFalse(any(line.startswith("splitfile: warning") for line in lines))
        self.assertNotIn(b"\x1b", done.stderr)
        self.assertEqual(os.listdir(self.dest), [])

    def test_a_plain_source_is_shown_as_it_is(self) -> None:
        self.write_bundle(b"<<<FILE x>>>\n", name="my bundle.txt")
        done = subprocess.run([sys.executable, SCRIPT, "my bundle.txt", "-o", self.dest], capture_output=True)
        self.assertTrue(done.stderr.startswith(b"splitfile: error: my bundle.txt:1: "), done.stderr)

    def test_long_invalid_names_are_shortened_in_messages(self) -> None:
        names = [f"{i}/" + "x" * 60000 for i in range(100)]
        self.write_bundle(bundle(*[(name, b"x\n") for name in names]))
        done = subprocess.run([sys.executable, SCRIPT, "bundle.txt", "-o", self.dest], capture_output=True)
        self.assertEqual(done.returncode, 1)
        lines = done.stderr.decode().splitlines()
        self.assertEqual(len(lines), 100)
        self.assertLess(max(map(len, lines)), 600)
        self.assertIn("'0/xxxxxxxx", lines[0])
        self.assertIn("xxxx' (60002 bytes)", lines[0])
        self.assertEqual(os.listdir(self.dest), [])


if __name__ == "__main__":
    unittest.main()
