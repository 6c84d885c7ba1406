"""Name rules (SPEC 2): what is refused everywhere, on Windows, and collisions."""

from __future__ import annotations

import unittest

from tests.helpers import splitfile

# name -> a word the reason must contain. Refused under both rule sets.
UNIVERSAL = [
    ("", "empty"),
    ("/etc/passwd", "starts with '/'"),
    ("/", "starts with '/'"),
    ("//server/share", "starts with '/'"),
    ("a/", "ends with '/'"),
    ("a//b", "empty part"),
    ("a///b", "empty part"),
    (".", "'.' part"),
    ("..", "'..' part"),
    ("../x", "'..' part"),
    ("a/../../x", "'..' part"),
    ("a/./b", "'.' part"),
    ("a/..", "'..' part"),
    ("..\\x", "backslash"),
    ("a\\b", "backslash"),
    ("C:\\Windows\\x", "backslash"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\rb", "control"),
    ("a\tb", "control"),
    ("\x1b[31mred", "control"),
    ("a\x7fb", "control"),
    ("a\x85b", "control"),
    ("a\x9bb", "control"),
    ("a\u200bb", "format"),  # zero-width space
    ("a\u200cb", "format"),  # zero-width non-joiner
    ("a\u200db", "format"),  # zero-width joiner (.g\u200dit on HFS+)
    (".g\u200cit/config", "format"),
    ("a\u202eb", "format"),  # right-to-left override
    ("a\u2066b", "format"),  # bidi isolate
    ("a\ufeffb", "format"),  # BOM as zero-width no-break space
    ("a\u00adb", "format"),  # soft hyphen
    ("a\u2028b", "line separator"),
    ("a\u2029b", "paragraph separator"),
    ("a\u034fb", "filler"),
    ("a\u115fb", "filler"),
    ("a\u1160b", "filler"),
    ("a\u17b4b", "filler"),
    ("a\u17b5b", "filler"),
    ("a\u3164b", "filler"),
    ("a\uffa0b", "filler"),
    (" a", "whitespace"),
    ("a ", "whitespace"),
    ("dir /a", "whitespace"),
    ("a/ b", "whitespace"),
    ("a\u00a0", "whitespace"),  # no-break space
    ("\u3000a", "whitespace"),  # ideographic space
    ("a\u2009/b", "whitespace"),  # thin space
    (".git", "version-control"),
    (".git/hooks/pre-commit", "version-control"),
    (".GIT/config", "version-control"),
    ("a/.Git/config", "version-control"),
    (".hg/hgrc", "version-control"),
    (".svn/entries", "version-control"),
    (".HG", "version-control"),
    (".splitfile-abc", "own prefix"),
    ("a/.splitfile-1-2", "own prefix"),
    ("x" * 256, "longer than 255"),
    ("\u00e9" * 128, "longer than 255"),  # 256 bytes in UTF-8
    ("/".join(["d" * 200] * 21), "longer than 4096"),
    ("\udcff", "not valid UTF-8"),
    ("a\udcc0\udc80", "not valid UTF-8"),
]

# Refused only by the Windows rules (on Windows, and with --portable).
WINDOWS_ONLY = [
    ("a:b", "':'"),
    ("file.txt:$DATA", "':'"),
    ("a<b", "'<'"),
    ("a>b", "'>'"),
    ('a"b', "'\"'"),
    ("a|b", "'|'"),
    ("a?b", "'?'"),
    ("a*b", "'*'"),
    ("a.", "ends with '.'"),
    ("dir./x", "ends with '.'"),
    (".git.", "ends with '.'"),
    ("...", "ends with '.'"),
    ("GIT~1", "short name"),
    ("git~12/config", "short name"),
    ("con", "device"),
    ("CON", "device"),
    ("nul", "device"),
    ("nul.txt", "device"),
    ("Aux.c", "device"),
    ("prn.tar.gz", "device"),
    ("com1 .txt", "device"),
    ("COM9", "device"),
    ("com0", "device"),
    ("lpt1", "device"),
    ("LPT9.log", "device"),
    ("com\u00b9", "device"),
    ("lpt\u00b3.txt", "device"),
    ("clock$", "device"),
    ("CONIN$", "device"),
    ("conout$.x", "device"),
    ("src/aux/x.c", "device"),
]

VALID = [
    "a", "a/b/c.txt", "README.md", ".gitignore", ".github/workflows/ci.yml", ".gitattributes",
    "git", "a.git", ".git2", "x/.gitkeep", "splitfile-x", "a/.splitfile", ".splitfilex",
    "dir with spaces/file name.txt", "caf\u00e9.txt", "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb",
    "emoji-\U0001f600.txt", "...x", ".x", "..x", "con-fig", "console.log", "comx", "com10",
    "lpt", "auxiliary.c", "a~1", "GIT~", "GIT~X", "x" * 255, "/".join(["d" * 200] * 20),
]
VALID_UNIX_ONLY = ["a:b", "a.", "x..", "nul", "COM1", "GIT~1", "what?.txt", 'say "hi"']


class NameRulesTest(unittest.TestCase):
    def test_the_table_is_large(self) -> None:
        self.assertGreaterEqual(len(UNIVERSAL) + len(WINDOWS_ONLY), 80)

    def test_universal_refusals_hold_under_both_rule_sets(self) -> None:
        for name, word in UNIVERSAL:
            for windows in (False, True):
                with self.subTest(name=name, windows=windows):
                    reasons = splitfile.check_name(name, windows)
                    self.assertTrue(reasons, "accepted")
                    self.assertIn(word, "; ".join(reasons))

    def test_windows_refusals_apply_only_with_windows_rules(self) -> None:
        for name, word in WINDOWS_ONLY:
            with self.subTest(name=name):
                self.assertEqual(splitfile.check_name(name, False), [])
                reasons = splitfile.check_name(name, True)
                self.assertTrue(reasons, "accepted")
                self.assertIn(word, "; ".join(reasons))

    def test_ordinary_names_are_accepted(self) -> None:
        for name in VALID:
            for windows in (False, True):
                with self.subTest(name=name, windows=windows):
                    self.assertEqual(splitfile.check_name(name, windows), [])
        for name in VALID_UNIX_ONLY:
            with self.subTest(name=name):
                self.assertEqual(splitfile.check_name(name, False), [])

    def test_every_reason_is_given(self) -> None:
        reasons = splitfile.check_name("../a\x1b/.git", False)
        text = "; ".join(reasons)
        for word in ("'..' part", "control", "version-control"):
            self.assertIn(word, text)


# name in quoted or attribute form (SPEC 2) -> the marker the message tells the user to write
WRAPPED = [
    ('"src/util.py"', "in quotes", "'<<<FILE src/util.py>>>'"),
    ("'a.py'", "in quotes", "'<<<FILE a.py>>>'"),
    ("`src/util.py`", "in backticks", "'<<<FILE src/util.py>>>'"),
    ("<a.py>", "in angle brackets", "'<<<FILE a.py>>>'"),
    ('path="src/util.py"', "in attribute form", "'<<<FILE src/util.py>>>'"),
    ("name='a.py'", "in attribute form", "'<<<FILE a.py>>>'"),
    ('file="a.py" lang="py"', "in attribute form", "'<<<FILE a.py>>>'"),
    ("name=a.py lang=py", "in attribute form", "'<<<FILE a.py>>>'"),
    ("a.py lang=py", "in attribute form", "'<<<FILE a.py>>>'"),
    ("path=a.py mode=text", "in attribute form", "'<<<FILE a.py>>>'"),
]
NOT_WRAPPED = ["year=2024/a.csv", "k=v", "a=b/c=d.txt", 'say "hi"', "it's", "a b.txt", "x=1 y", "`a", "a\"",
               "<a", "2024=x y"]


class WrappedNameTest(unittest.TestCase):
    def test_quoted_and_attribute_forms_are_refused_with_the_marker_to_write(self) -> None:
        for name, form, marker in WRAPPED:
            for windows in (False, True):
                with self.subTest(name=name, windows=windows):
                    text = "; ".join(splitfile.check_name(name, windows))
                    self.assertIn(f"it is {form}, not a path; write {marker}", text)

    def test_hive_folders_and_inner_quotes_stay_valid(self) -> None:
        for name in NOT_WRAPPED:
            with self.subTest(name=name):
                self.assertEqual(splitfile.check_name(name), [])


class QuoteTest(unittest.TestCase):
    def test_odd_characters_are_escaped(self) -> None:
        table = [
            ("plain", "'plain'"),
            ("a\x1b[2Jb", "'a\\x1b[2Jb'"),
            ("r\u202eev", "'r\\u202eev'"),
            ("it's", "'it\\'s'"),
            ("bad\udcff", "'bad\\xff'"),
            ("fill\u3164", "'fill\\u3164'"),
            ("caf\u00e9", "'caf\u00e9'"),
            ("nl\n", "'nl\\x0a'"),
        ]
        for name, shown in table:
            with self.subTest(name=name):
                self.assertEqual(splitfile.quote(name), shown)


class CollisionTest(unittest.TestCase):
    def collisions(self, names: list[str]) -> list[str | None]:
        index = splitfile.NameIndex()
        return [index.add(name, line) for line, name in enumerate(names, 1)]

    def test_names_equal_under_caseless_matching_collide(self) -> None:
        pairs = [
            ("a.txt", "A.TXT"),
            ("Dir/x", "dir/X"),
            ("stra\u00dfe", "STRASSE"),  # casefold: sharp s
            ("caf\u00e9", "cafe\u0301"),  # NFC vs NFD
            ("\u00c5", "\u212b"),  # Angstrom sign
            ("\ufb01le", "file"),  # ligature fi
            ("same", "same"),
        ]
        for first, second in pairs:
            with self.subTest(first=first, second=second):
                result = self.collisions([first, second])
                self.assertIsNone(result[0])
                self.assertIsNotNone(result[1])
                self.assertIn("line 1", result[1])

    def test_a_file_that_is_another_names_folder_collides(self) -> None:
        for names in (["a", "A/b"], ["a/b", "a"], ["x/y/z", "X/Y"], ["x/Y", "x/y/z"]):
            with self.subTest(names=names):
                result = self.collisions(names)
                self.assertIsNone(result[0])
                self.assertIn("folder", result[1])

    def test_collisions_are_found_in_a_folder_an_earlier_name_made(self) -> None:
        # The folder d exists once d/x is in: later names in it must still meet each other.
        table = [
            (["d/x", "d/b", "d/b"], "'d/b' appears twice; the first block is at line 2"),
            (["d/x", "d/b", "d/B"], "'d/B' and 'd/b' (line 2) differ only in case"),
            (["d/x", "d/b", "D/b/c"], "'D/b/c' needs 'd/b' (line 2) as a folder, but it is a file"),
            (["d/x", "d/b/c", "d/B"], "'d/B' is a file, but 'd/b/c' (line 2) needs it as a folder"),
            (["d/e/x", "d/e/f/g", "d/e/f/g"], "'d/e/f/g' appears twice; the first block is at line 2"),
        ]
        for names, message in table:
            with self.subTest(names=names):
                result = self.collisions(names)
                self.assertEqual(result[:2], [None, None])
                self.assertIsNotNone(result[2])
                self.assertIn(message, result[2])

    def test_every_clash_names_its_earlier_line_before_and_after_the_index_is_built(self) -> None:
        # The first clashes are searched for, later ones looked up: both must name the same earlier block.
        count = splitfile._SEARCHED_CLASHES * 3
        first = [f"Dir/F{i}" if i % 2 else f"dir/f{i}" for i in range(count)]
        again = [f"dir/f{i}" if i % 2 else f"dir/f{i}" for i in reversed(range(count))]
        results = self.collisions(first + again)
        self.assertEqual(results[:count], [None] * count)
        for i, result in zip(reversed(range(count)), results[count:]):
            self.assertIsNotNone(result)
            if i % 2:
                self.assertIn(f"and 'Dir/F{i}' (line {i + 1}) differ only in case", result)
            else:
                self.assertIn(f"appears twice; the first block is at line {i + 1}", result)

    def test_distinct_names_do_not_collide(self) -> None:
        self.assertEqual(self.collisions(["a/b", "a/c", "ab", "a/b2", "b/a"]), [None] * 5)

    def test_collisions_are_found_at_every_depth(self) -> None:
        deep = "/".join(f"d{i}" for i in range(50))
        table = [
            ([deep + "/f", deep.upper() + "/F"], "differ only in case"),
            ([deep + "/f", deep], "is a file, but"),
            ([deep, deep + "/f"], "needs"),
            ([deep + "/f", deep + "/f"], "appears twice; the first block is at line 1"),
        ]
        for names, words in table:
            with self.subTest(words):
                result = self.collisions(names)
                self.assertIsNone(result[0])
                self.assertIn(words, result[1])
        self.assertEqual(self.collisions([deep + "/a", deep + "/b", "d0/x", deep + "/c/d"]), [None] * 4)

    def test_memory_grows_linearly_with_the_length_of_deep_names(self) -> None:
        import tracemalloc

        def peak(depth: int) -> int:
            names = ["/".join(f"p{n}x{i}" for i in range(depth)) for n in range(20)]
            tracemalloc.start()
            index = splitfile.NameIndex()
            for number, name in enumerate(names, 1):
                self.assertIsNone(index.add(name, number))
            size = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return size

        # Every prefix held as its own tuple made this grow 4x when depth doubles; linear grows 2x.
        self.assertLess(peak(800) / peak(400), 2.6)

    def test_a_folder_costs_tens_of_bytes_not_an_object(self) -> None:
        # 100 names of 2,000 one-letter parts need 200,000 folders; a dict per folder took about 270 bytes.
        import tracemalloc

        names = [f"n{n}/" + "a/" * 1998 + "f" for n in range(100)]
        tracemalloc.start()
        index = splitfile.NameIndex()
        for number, name in enumerate(names, 1):
            self.assertIsNone(index.add(name, number))
        per_folder = tracemalloc.get_traced_memory()[1] / (100 * 1999)
        tracemalloc.stop()
        self.assertLess(per_folder, 80)
        self.assertIn("(line 8) needs it as a folder", index.add("n7/" + "a/" * 1000 + "a", 101) or "")


if __name__ == "__main__":
    unittest.main()
