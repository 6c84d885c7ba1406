"""The Python API: every public function, each error kind, warnings, rollback, library manners."""

from __future__ import annotations

import errno
import io
import os
import pathlib
import random
import shutil
import signal
import threading
import unittest
from unittest import mock

from tests.helpers import TempDirTest, bundle, files_of, leftovers, make_tree, snapshot, splitfile

TWO = bundle(("src/app.py", b"print('hi')\n"), ("README.md", b"# Demo\n"), prose=b"Here you are.\n")


class ExtractTest(TempDirTest):
    def test_extract_returns_one_result_per_file_in_bundle_order(self) -> None:
        results = splitfile.extract(TWO, self.dest)
        self.assertEqual(
            [(r.name, r.status, r.line) for r in results], [("src/app.py", "new", 2), ("README.md", "new", 5)]
        )
        self.assertEqual(files_of(self.dest), {"src/app.py": b"print('hi')\n", "README.md": b"# Demo\n"})

    def test_statuses_same_and_changed_with_force(self) -> None:
        make_tree(self.dest, {"src/app.py": b"print('hi')\n", "README.md": b"old\n"})
        results = splitfile.extract(TWO, self.dest, force=True)
        self.assertEqual([(r.name, r.status) for r in results], [("src/app.py", "same"), ("README.md", "changed")])
        self.assertEqual(files_of(self.dest)["README.md"], b"# Demo\n")

    def test_a_dry_run_writes_nothing_and_returns_the_plan(self) -> None:
        out = os.path.join(self.tmp, "not-yet")
        results = splitfile.extract(TWO, out, dry_run=True)
        self.assertEqual([r.status for r in results], ["new", "new"])
        self.assertFalse(os.path.lexists(out))

    def test_every_form_of_bundle_gives_the_same_files(self) -> None:
        path = pathlib.Path(self.write_bundle(TWO))
        forms = {
            "bytes": TWO,
            "bytearray": bytearray(TWO),
            "memoryview": memoryview(TWO),
            "str": TWO.decode("utf-8"),
            "path": path,
            "stream": io.BytesIO(TWO),
        }
        for label, form in forms.items():
            with self.subTest(form=label):
                out = os.path.join(self.tmp, "out-" + label)
                results = splitfile.extract(form, out)  # type: ignore[arg-type]
                self.assertEqual([(r.name, r.line) for r in results], [("src/app.py", 2), ("README.md", 5)])
                self.assertEqual(files_of(out), {"src/app.py": b"print('hi')\n", "README.md": b"# Demo\n"})

    def test_a_str_is_text_never_a_path_and_the_error_says_how_to_pass_a_path(self) -> None:
        name = self.write_bundle(TWO)
        with self.assertRaises(splitfile.BundleError) as caught:
            splitfile.extract(name, self.dest)
        self.assertIn("no '<<<FILE name>>>' block found", caught.exception.message)
        self.assertIn("pass pathlib.Path('bundle.txt')", caught.exception.message)
        self.assertEqual(os.listdir(self.dest), [])

    def test_a_text_stream_or_another_type_is_a_usage_error(self) -> None:
        for wrong in (io.StringIO(TWO.decode()), 42, None):
            with self.subTest(wrong=type(wrong).__name__):
                with self.assertRaises(splitfile.UsageError):
                    splitfile.extract(wrong, self.dest)  # type: ignore[arg-type]
        self.assertEqual(os.listdir(self.dest), [])


class ErrorKindTest(TempDirTest):
    """Each kind of failure is its own class, with the line and name it is about; nothing is written."""

    def assertFails(self, data: bytes, kind: type, line: int, name: str | None, **options: bool) -> splitfile.SplitError:
        before = snapshot(self.outer)
        with self.assertRaises(kind) as caught:
            splitfile.extract(data, self.dest, **options)  # type: ignore[arg-type]
        error = caught.exception
        self.assertEqual((error.line, error.name), (line, name))
        self.assertEqual(error.errors, [error])
        self.assertUnchanged(before)
        return error

    def test_structure_error(self) -> None:
        error = self.assertFails(b"prose\n<<<FILE a.txt>>>\nbody\n", splitfile.BundleError, 2, None)
        self.assertIn("never closed", error.message)
        self.assertEqual(error.render("answer.txt")[:15], "answer.txt:2: b")

    def test_name_error(self) -> None:
        error = self.assertFails(bundle(("ok.txt", b"x\n"), ("../evil", b"x\n")), splitfile.InvalidNameError, 4, "../evil")
        self.assertIn("'..'", error.message)

    def test_conflict(self) -> None:
        make_tree(self.dest, {"a.txt": b"mine\n"})
        self.assertFails(bundle(("a.txt", b"theirs\n")), splitfile.ConflictError, 1, "a.txt")

    def test_target_that_can_never_be_written(self) -> None:
        os.makedirs(os.path.join(self.dest, "a.txt"))
        self.assertFails(bundle(("a.txt", b"x\n")), splitfile.TargetError, 1, "a.txt", force=True)

    def test_disk_error(self) -> None:
        def full(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        make_tree(self.dest, {"keep.txt": b"kept\n"})
        with mock.patch("os.write", full):
            error = self.assertFails(bundle(("new/a.txt", b"x\n")), splitfile.DiskError, 1, "new/a.txt")
        self.assertIn("No space left on device", error.message)

    def test_usage_error(self) -> None:
        with self.assertRaises(splitfile.UsageError) as caught:
            splitfile.read(3.5)  # type: ignore[arg-type]
        self.assertIn("not float", caught.exception.message)

    def test_every_kind_is_a_split_error(self) -> None:
        for kind in (splitfile.BundleError, splitfile.InvalidNameError, splitfile.ConflictError,
                     splitfile.TargetError, splitfile.DiskError, splitfile.UsageError, splitfile.ErrorList):
            with self.subTest(kind=kind.__name__):
                self.assertTrue(issubclass(kind, splitfile.SplitError))

    def test_several_problems_come_in_one_error_list_in_line_order(self) -> None:
        make_tree(self.dest, {"b.txt": b"old\n", "d.txt": b"old\n"})
        data = bundle(("a.txt", b"x\n"), ("b.txt", b"new\n"), ("c.txt", b"x\n"), ("d.txt", b"new\n"))
        before = snapshot(self.outer)
        with self.assertRaises(splitfile.ErrorList) as caught:
            splitfile.extract(data, self.dest)
        found = [(type(e).__name__, e.line, e.name) for e in caught.exception.errors]
        self.assertEqual(found, [("ConflictError", 4, "b.txt"), ("ConflictError", 10, "d.txt")])
        self.assertUnchanged(before)

    def test_several_bad_names_are_all_reported(self) -> None:
        data = bundle(("/abs", b"x\n"), ("fine", b"x\n"), ("a\x1bb", b"x\n"))
        with self.assertRaises(splitfile.ErrorList) as caught:
            splitfile.read(data)
        self.assertEqual([(e.line, e.name) for e in caught.exception.errors], [(1, "/abs"), (7, "a\x1bb")])
        self.assertTrue(all(isinstance(e, splitfile.InvalidNameError) for e in caught.exception.errors))


class RollbackTest(TempDirTest):
    def test_an_interrupt_raised_from_inside_rolls_everything_back(self) -> None:
        make_tree(self.dest, {"old.txt": b"old\n"})
        before = snapshot(self.outer)
        data = bundle(*[(f"d{i}/f{i}.txt", b"data\n" * 10) for i in range(5)], ("old.txt", b"new\n"))
        real_write = os.write
        calls = []

        def interrupting(fd: int, view: object) -> int:
            calls.append(fd)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return real_write(fd, view)  # type: ignore[arg-type]

        with mock.patch("os.write", interrupting), self.assertRaises(KeyboardInterrupt):
            splitfile.extract(data, self.dest, force=True)
        self.assertUnchanged(before)


    def test_an_interrupt_during_the_renames_rolls_back_too(self) -> None:
        make_tree(self.dest, {"old.txt": b"old\n"})
        before = snapshot(self.outer)
        data = bundle(("a.txt", b"a\n"), ("b.txt", b"b\n"), ("old.txt", b"new\n"))
        real_replace = os.replace

        def interrupting(*args: object, **kw: object) -> None:
            real_replace(*args, **kw)  # type: ignore[arg-type]
            raise KeyboardInterrupt

        with mock.patch("os.replace", interrupting), self.assertRaises(KeyboardInterrupt):
            splitfile.extract(data, self.dest, force=True)
        self.assertUnchanged(before)

    def test_an_interrupt_the_moment_any_call_returns_rolls_back_or_leaves_the_finished_result(self) -> None:
        """As Python's own Ctrl-C handler does in a program: KeyboardInterrupt right after a system call."""
        names = ("open", "close", "write", "read", "link", "rename", "replace", "unlink", "mkdir", "rmdir",
                 "stat", "lstat", "fstat", "fchmod", "fsync")
        data = bundle(("old/a.txt", b"new a\n"), ("n1/n2/b.txt", b"new b\n"), ("c.txt", b"new c\n"), ("d.txt", b""))
        wanted = {"old/a.txt": b"new a\n", "n1/n2/b.txt": b"new b\n", "c.txt": b"new c\n", "d.txt": b""}
        outcomes = {"rolled back": 0, "finished": 0}
        for output in (self.dest, os.path.join(self.outer, "new1", "new2")):
            for nth in range(1, 200):
                with self.subTest(output=output, nth=nth):
                    shutil.rmtree(self.dest)
                    make_tree(self.dest, {"old/a.txt": b"OLD A\n", "c.txt": b"OLD C\n"})
                    before = snapshot(self.outer)
                    calls = [0]
                    real = {name: getattr(os, name) for name in names}

                    def wrap(name: str):  # type: ignore[no-untyped-def]
                        def call(*args: object, **kw: object) -> object:
                            result = real[name](*args, **kw)
                            calls[0] += 1
                            if calls[0] == nth:
                                raise KeyboardInterrupt
                            return result
                        return call

                    patches = [mock.patch(f"os.{name}", wrap(name)) for name in names]
                    for patch in patches:
                        patch.start()
                    try:
                        splitfile.extract(data, output, force=True)
                        finished = True
                    except KeyboardInterrupt:
                        finished = False
                    finally:
                        for patch in patches:
                            patch.stop()
                    if finished:
                        outcomes["finished"] += 1
                        self.assertEqual({k: v for k, v in files_of(output).items() if ".splitfile-" not in k}, wanted)
                    else:
                        outcomes["rolled back"] += 1
                        self.assertUnchanged(before)
                    if calls[0] < nth:  # every call was passed without an interrupt: done
                        break
        self.assertGreater(outcomes["rolled back"], 40)
        self.assertGreater(outcomes["finished"], 2)


    def test_an_interrupt_at_any_line_of_the_journal_rolls_back_or_leaves_the_finished_result(self) -> None:
        """Ctrl-C lands between two Python lines, too: between recording a step and making it, say."""
        import sys

        data = bundle(("old/a.txt", b"new a\n"), ("n1/b.txt", b"new b\n"), ("c.txt", b"new c\n"))
        wanted = {"old/a.txt": b"new a\n", "n1/b.txt": b"new b\n", "c.txt": b"new c\n"}
        watched = {splitfile._Journal.do.__code__, splitfile._Journal.finish.__code__}
        outcomes = {"rolled back": 0, "finished": 0}
        for nth in range(1, 500):
            with self.subTest(nth=nth):
                shutil.rmtree(self.dest)
                make_tree(self.dest, {"old/a.txt": b"OLD A\n", "c.txt": b"OLD C\n"})
                before = snapshot(self.outer)
                lines = [0]

                def local(frame, event, arg):  # type: ignore[no-untyped-def]
                    if event == "line":
                        lines[0] += 1
                        if lines[0] == nth:
                            raise KeyboardInterrupt
                    return local

                def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
                    return local if frame.f_code in watched else None

                sys.settrace(tracer)
                try:
                    splitfile.extract(data, self.dest, force=True)
                except KeyboardInterrupt:  # before the last file was in place, or after: in finish()
                    pass
                finally:
                    sys.settrace(None)
                self.assertEqual(leftovers(self.outer), [])
                if files_of(self.dest) == wanted:
                    outcomes["finished"] += 1
                else:
                    outcomes["rolled back"] += 1
                    self.assertUnchanged(before)
                if lines[0] < nth:  # no line was interrupted: done
                    break
        self.assertGreater(outcomes["rolled back"], 50)
        self.assertGreater(outcomes["finished"], 10)

    def test_an_exception_after_the_last_file_is_in_place_undoes_nothing(self) -> None:
        make_tree(self.dest, {"a.txt": b"old a\n", "b.txt": b"old b\n"})
        real_unlink = os.unlink
        dropped: list[str] = []

        def exiting(path: str, *args: object, **kw: object) -> None:  # an app's SIGTERM handler calling sys.exit
            if path.endswith(".old") and dropped:
                raise SystemExit(143)
            dropped.append(path)
            real_unlink(path, *args, **kw)  # type: ignore[arg-type]

        with mock.patch("os.unlink", exiting), self.assertRaises(SystemExit):
            splitfile.extract(bundle(("a.txt", b"new a\n"), ("b.txt", b"new b\n")), self.dest, force=True)
        found = {name: body for name, body in files_of(self.dest).items() if ".splitfile-" not in name}
        self.assertEqual(found, {"a.txt": b"new a\n", "b.txt": b"new b\n"})


class MannersTest(TempDirTest):
    SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGXFSZ") if hasattr(signal, name)]

    def test_no_signal_handler_is_changed_and_nothing_is_printed(self) -> None:
        before = {signum: signal.getsignal(signum) for signum in self.SIGNALS}
        seen: dict[int, object] = {}
        real_write = os.write

        def watching(fd: int, view: object) -> int:  # look while the run is under way
            seen.update({signum: signal.getsignal(signum) for signum in self.SIGNALS})
            return real_write(fd, view)  # type: ignore[arg-type]

        out, err = io.StringIO(), io.StringIO()
        with mock.patch("sys.stdout", out), mock.patch("sys.stderr", err), mock.patch("os.write", watching):
            splitfile.extract(TWO + b"<<FILE near miss>>>\n", self.dest)
            splitfile.read(TWO)
            splitfile.list_names(TWO)
            splitfile.diff(TWO, self.dest)
        self.assertEqual(seen, before)
        self.assertEqual({signum: signal.getsignal(signum) for signum in self.SIGNALS}, before)
        self.assertEqual((out.getvalue(), err.getvalue()), ("", ""))

    def test_warnings_go_to_the_callback_with_their_line(self) -> None:
        warnings: list[splitfile.SplitWarning] = []
        data = b"<<FILE x.txt>>>\n" + TWO + b"**<<<FILE y>>>**\n"
        splitfile.extract(data, self.dest, on_warning=warnings.append)
        self.assertEqual([w.line for w in warnings], [1, 9])
        self.assertIn("'<<FILE x.txt>>>'", warnings[0].message)
        self.assertEqual(warnings[0].render("a.txt")[:8], "a.txt:1:")

    def test_two_threads_extract_into_two_folders_at_once(self) -> None:
        data = bundle(*[(f"pkg{i % 7}/m{i}.py", b"x = %d\n" % i * 50) for i in range(300)])
        outs = [os.path.join(self.tmp, "one"), os.path.join(self.tmp, "two")]
        start = threading.Barrier(2)
        results: dict[str, object] = {}

        def work(out: str) -> None:
            start.wait()
            try:
                results[out] = len(splitfile.extract(data, out))
            except BaseException as exc:  # reported below, not lost in the thread
                results[out] = exc

        threads = [threading.Thread(target=work, args=(out,)) for out in outs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(results, {outs[0]: 300, outs[1]: 300})
        self.assertEqual(files_of(outs[0]), files_of(outs[1]))
        self.assertEqual(len(files_of(outs[0])), 300)
        self.assertEqual(leftovers(self.tmp), [])


class ReadListDiffTest(TempDirTest):
    def test_read_returns_names_and_exact_bodies_and_writes_nothing(self) -> None:
        data = b"\xef\xbb\xbfprose\r\n<<<FILE a.txt>>>\r\nline\r\n\r\n<<<END a.txt>>>\r\n<<<FILE e>>>\n<<<END e>>>\n"
        before = snapshot(self.tmp)
        self.assertEqual(splitfile.read(data), [("a.txt", b"line\r\n\r\n"), ("e", b"")])
        self.assertEqual(snapshot(self.tmp), before)

    def test_read_applies_the_windows_rules_when_portable(self) -> None:
        data = bundle(("aux.c", b"x\n"))
        self.assertEqual(splitfile.read(data), [("aux.c", b"x\n")])
        with self.assertRaises(splitfile.InvalidNameError) as caught:
            splitfile.read(data, portable=True)
        self.assertEqual((caught.exception.line, caught.exception.name), (1, "aux.c"))

    def test_list_names(self) -> None:
        self.assertEqual(splitfile.list_names(TWO), ["src/app.py", "README.md"])
        with self.assertRaises(splitfile.BundleError):
            splitfile.list_names(b"no blocks here\n")

    def test_diff_gives_a_patch_for_each_file_that_would_change(self) -> None:
        make_tree(self.dest, {"src/app.py": b"print('hi')\n", "README.md": b"# Old\n"})
        before = snapshot(self.outer)
        diffs = splitfile.diff(TWO + bundle(("new.txt", b"n\n")), self.dest)
        self.assertEqual([(d.name, d.status, d.line) for d in diffs], [("README.md", "changed", 5), ("new.txt", "new", 8)])
        self.assertEqual(diffs[0].text, b"diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# Old\n+# Demo\n")
        self.assertEqual(diffs[1].text, b"diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+n\n")
        self.assertUnchanged(before)

    def test_diff_of_nothing_to_change_is_empty(self) -> None:
        splitfile.extract(TWO, self.dest)
        self.assertEqual(splitfile.diff(TWO, pathlib.Path(self.dest)), [])


class FormatReadTest(unittest.TestCase):
    def test_read_of_format_gives_back_random_files(self) -> None:
        rng = random.Random(20261202)
        parts = ["src", "a", "Ünï", "d e", "x.py", "year=2024", "日本", "-", "a.b", "_"]
        lines = [b"x\n", b"\n", b"\r\n", b"<<<FILE a>>>\n", b"<<<END b>>>\n", b"\xc3\xa9\n", b"\t<<<END x>>>\r\n"]
        for case in range(300):
            with self.subTest(case=case):
                names = list(dict.fromkeys(
                    "/".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) + f"{i}" for i in range(rng.randint(1, 6))
                ))
                files = [(name, b"".join(rng.choice(lines) for _ in range(rng.randint(0, 8)))) for name in names]
                self.assertEqual(splitfile.read(splitfile.format(files)), files)

    def test_format_refuses_what_reading_could_not_give_back(self) -> None:
        cases = [
            ([("../x", b"a\n")], splitfile.InvalidNameError),
            ([("a", b"no newline")], splitfile.BundleError),
            ([("a", b"<<<END a>>>\n")], splitfile.BundleError),
            ([("a", b"nul\0\n")], splitfile.BundleError),
            ([("a", b"\xff\n")], splitfile.BundleError),
            ([("a", b"x\n"), ("A", b"y\n")], splitfile.InvalidNameError),
            ([], splitfile.BundleError),
        ]
        for files, kind in cases:
            with self.subTest(files=files):
                with self.assertRaises(kind):
                    splitfile.format(files)

    def test_wrong_arguments_are_usage_errors(self) -> None:
        calls = [
            lambda: splitfile.format([(b"a", b"x\n")]),
            lambda: splitfile.format([("a", "text\n")]),
            lambda: splitfile.format([("a", b"x\n", "extra")]),
            lambda: splitfile.format(["ab"]),
            lambda: splitfile.pack("src", io.BytesIO()),
            lambda: splitfile.pack(["src"], io.StringIO()),
            lambda: splitfile.pack([42], io.BytesIO()),
            lambda: splitfile.extract(TWO, None),  # type: ignore[arg-type]
            lambda: splitfile.read(io.BytesIO(TWO).read),  # type: ignore[arg-type]
        ]
        for number, call in enumerate(calls):
            with self.subTest(call=number):
                with self.assertRaises(splitfile.UsageError):
                    call()

    def test_a_stream_that_gives_text_is_a_usage_error(self) -> None:
        import tempfile

        with tempfile.NamedTemporaryFile("w+") as text:
            text.write(TWO.decode())
            text.seek(0)
            with self.assertRaises(splitfile.UsageError):
                splitfile.read(text)  # type: ignore[arg-type]

    def test_a_name_with_a_lone_surrogate_is_refused(self) -> None:
        with self.assertRaises(splitfile.InvalidNameError) as caught:
            splitfile.format([("a\ud800b", b"x\n")])
        self.assertIn("lone surrogate", caught.exception.message)


class PublicNamesTest(unittest.TestCase):
    def test_all_names_exist_and_are_documented(self) -> None:
        for name in splitfile.__all__:
            with self.subTest(name=name):
                value = getattr(splitfile, name)
                if callable(value):
                    self.assertTrue((value.__doc__ or "").strip(), f"{name} has no docstring")


if __name__ == "__main__":
    unittest.main()
