"""The undo journal: each kind of step is made, undone by rollback, and the tree checked."""

from __future__ import annotations

import os

from tests.helpers import TempDirTest, bundle, files_of, leftovers, make_tree, snapshot, splitfile


class JournalStepTest(TempDirTest):
    """One test per kind of step: do it, roll it back, and find the tree as it was."""

    def stage(self, writer: splitfile.Writer, name: str, body: bytes) -> splitfile.Entry:
        entry = writer.add(name, 1)
        assert entry is not None
        writer.write(entry, body)
        writer.end(entry)
        return entry

    def test_root_folders_made_for_dash_o_are_removed(self) -> None:
        before = snapshot(self.outer)
        writer = splitfile.Writer(os.path.join(self.dest, "new", "deeper"))
        self.stage(writer, "a", b"a\n")
        self.assertTrue(os.path.isdir(os.path.join(self.dest, "new", "deeper")))
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_folders_made_below_dir_are_removed_deepest_first(self) -> None:
        make_tree(self.dest, {"keep/x": b"x\n"})
        before = snapshot(self.outer)
        writer = splitfile.Writer(self.dest)
        self.stage(writer, "keep/new/deep/a", b"a\n")
        self.assertTrue(os.path.isdir(os.path.join(self.dest, "keep", "new", "deep")))
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_a_temporary_file_is_removed(self) -> None:
        before = snapshot(self.outer)
        writer = splitfile.Writer(self.dest)
        self.stage(writer, "a", b"a\n")
        self.assertEqual(len(leftovers(self.dest)), 1)
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_a_temporary_file_dropped_because_the_body_is_the_same_is_not_an_error(self) -> None:
        make_tree(self.dest, {"a": b"a\n"})
        before = snapshot(self.outer)
        writer = splitfile.Writer(self.dest, force=True)
        entry = self.stage(writer, "a", b"a\n")
        self.assertEqual((entry.status, leftovers(self.dest)), ("same", []))
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def _writer_with_old_file(self) -> tuple[splitfile.Writer, splitfile.Entry, object, dict]:
        make_tree(self.dest, {"a": b"old\n"})
        before = snapshot(self.outer)
        writer = splitfile.Writer(self.dest, force=True)
        entry = self.stage(writer, "a", b"new\n")
        folder = writer._tree.folder((), False)
        return writer, entry, folder, before

    def test_a_second_name_kept_for_the_old_file_is_removed(self) -> None:
        writer, entry, folder, before = self._writer_with_old_file()
        backup = writer._journal.backup_name(entry)
        writer._journal.do(splitfile._KEPT, entry, lambda: writer._tree.link(folder, "a", backup))
        self.assertEqual(files_of(self.dest)[backup], b"old\n")
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_an_old_file_moved_aside_is_moved_back(self) -> None:
        writer, entry, folder, before = self._writer_with_old_file()
        backup = writer._journal.backup_name(entry)
        writer._journal.do(splitfile._ASIDE, entry, lambda: writer._tree.rename(folder, "a", backup, False))
        self.assertNotIn("a", files_of(self.dest))
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)  # the same inode and mtime are back under the name

    def test_a_replaced_file_is_put_back_under_its_name(self) -> None:
        writer, entry, folder, before = self._writer_with_old_file()
        writer._replace(entry, folder)  # kept under a second name, then replaced
        self.assertEqual(files_of(self.dest)["a"], b"new\n")
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_a_replaced_file_moved_aside_is_put_back_under_its_name(self) -> None:
        from unittest import mock
        import errno

        writer, entry, folder, before = self._writer_with_old_file()
        with mock.patch.object(os, "link", side_effect=OSError(errno.EPERM, "Operation not permitted")):
            writer._replace(entry, folder)  # moved aside, then replaced
        self.assertEqual(files_of(self.dest)["a"], b"new\n")
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_a_new_file_given_its_name_is_removed(self) -> None:
        for place in ("_place_by_link", "_place_by_rename", "_place_by_lstat_rename"):
            with self.subTest(place=place):
                before = snapshot(self.outer)
                writer = splitfile.Writer(self.dest)
                entry = self.stage(writer, "d/a", b"a\n")
                getattr(writer, place)(entry, writer._tree.folder(("d",), False))
                self.assertEqual(files_of(self.dest), {"d/a": b"a\n"})
                self.assertEqual(writer.rollback(), [])
                self.assertUnchanged(before)

    def test_success_drops_the_second_names_and_rollback_has_nothing_left(self) -> None:
        make_tree(self.dest, {"a": b"old\n"})
        writer = splitfile.Writer(self.dest, force=True)
        self.stage(writer, "a", b"new\n")
        self.stage(writer, "b/c", b"c\n")
        self.assertEqual(writer.commit(), [])
        writer.close()
        self.assertEqual(files_of(self.dest), {"a": b"new\n", "b/c": b"c\n"})
        self.assertEqual(leftovers(self.dest), [])

    def test_a_step_that_fails_is_not_recorded(self) -> None:
        before = snapshot(self.outer)
        writer = splitfile.Writer(self.dest)
        self.stage(writer, "a", b"a\n")

        def fail() -> None:
            raise OSError(5, "Input/output error")

        with self.assertRaises(OSError):
            writer._journal.do(splitfile._NAMED, writer.entries[0], fail)
        self.assertEqual([step % splitfile._KINDS for step in writer._journal._steps], [splitfile._TEMP])
        self.assertEqual(writer.rollback(), [])
        self.assertUnchanged(before)

    def test_a_writer_that_meets_keyboard_interrupt_rolls_back_without_any_handler(self) -> None:
        before = snapshot(self.outer)
        writer = splitfile.Writer(os.path.join(self.dest, "fresh"))
        try:
            entry = self.stage(writer, "x/y", b"y\n")
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.assertEqual(writer.rollback(), [])
        self.assertEqual(entry.status, "new")
        self.assertUnchanged(before)

    def test_two_writers_in_two_threads_both_work(self) -> None:
        import threading

        results: dict[str, object] = {}

        def work(tag: str) -> None:
            writer = splitfile.Writer(os.path.join(self.dest, tag))
            try:
                for i in range(50):
                    self.stage(writer, f"d{i % 5}/f{i}", b"%d\n" % i)
                results[tag] = writer.commit()
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[tag] = exc
                writer.rollback()
            finally:
                writer.close()

        threads = [threading.Thread(target=work, args=(tag,)) for tag in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(results, {"one": [], "two": []})
        for tag in ("one", "two"):
            self.assertEqual(len(files_of(os.path.join(self.dest, tag))), 50)


class RollbackUnderFireTest(TempDirTest):
    """A rollback that meets a failure or an interrupt itself never loses a replaced file's old content."""

    BUNDLE = bundle(("a.txt", b"new\n"), ("b.txt", b"b\n"))

    def extract_failing_at_the_second_placement(self, undo: object) -> None:
        from unittest import mock

        real_place = splitfile.Writer._place
        placed = [0]

        def place(writer: splitfile.Writer, entry: splitfile.Entry) -> None:
            placed[0] += 1
            if placed[0] == 2:
                raise splitfile.DiskError("Input/output error (injected)")
            real_place(writer, entry)

        with mock.patch.object(splitfile.Writer, "_place", place), \
                mock.patch.object(splitfile._Journal, "_undo", undo), self.assertRaises(splitfile.DiskError):
            splitfile.extract(self.BUNDLE, self.dest, force=True)

    def test_an_interrupt_as_the_rollback_starts_undoes_that_step_again(self) -> None:
        make_tree(self.dest, {"a.txt": b"ORIGINAL\n"})
        before = snapshot(self.outer)
        real_undo = splitfile._Journal._undo
        calls = [0]

        def undo(journal: object, kind: int, subject: object) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise KeyboardInterrupt  # Ctrl-C in a library, as the rollback starts
            real_undo(journal, kind, subject)  # type: ignore[arg-type]

        self.extract_failing_at_the_second_placement(undo)
        self.assertUnchanged(before)

    def test_an_old_file_that_cannot_be_put_back_keeps_its_second_name(self) -> None:
        make_tree(self.dest, {"a.txt": b"ORIGINAL\n"})
        real_undo = splitfile._Journal._undo
        problems: list[str] = []

        def undo(journal: object, kind: int, subject: object) -> None:
            if kind == splitfile._REPLACED:
                raise OSError(5, "Input/output error")
            real_undo(journal, kind, subject)  # type: ignore[arg-type]

        from unittest import mock

        with mock.patch.object(splitfile._Sink, "problem", lambda sink, message: problems.append(message)):
            self.extract_failing_at_the_second_placement(undo)
        kept = [name for name in files_of(self.dest) if name.endswith(".old")]
        self.assertEqual(len(kept), 1)
        self.assertEqual(files_of(self.dest)[kept[0]], b"ORIGINAL\n")  # the only copy of the old content
        self.assertTrue(any(f"its old content is kept as '{kept[0]}'" in problem for problem in problems), problems)
