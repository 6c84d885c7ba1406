"""Marker mistakes people really make (SPEC 1.8-1.10): each fails or warns at its line, with the fix.

Every case runs through main() in both line-number modes (a bundle file, read
again for line numbers; stdin, counted as the bytes pass) and at tiny read
sizes; a failing case leaves the output folder exactly as it was.
"""

from __future__ import annotations

import os
import shutil

from tests.helpers import TempDirTest, bundle, files_of, make_tree, run, snapshot, splitfile

# title, bundle, exit status, exact stderr lines ({src} is the bundle's name in messages)
MISTAKES = [
    # Found by an outside probe: decoration beyond ASCII Markdown, another spelling, an invisible blank.
    ('zero-width space before both markers', b'<<<FILE ok.py>>>\nok\n<<<END ok.py>>>\n' + b'\xe2\x80\x8b<<<FILE b.py>>>\ny\n\xe2\x80\x8b<<<END b.py>>>\n', 1,
     ["splitfile: error: {src}:4: '\\u200b<<<FILE b.py>>>' is not a marker, so the file that line 6 closes would be lost: it has an invisible character (a non-breaking or zero-width space, or a byte-order mark) before or after it; write '<<<FILE b.py>>>'"]),
    ('heading markers', b'<<<FILE ok.py>>>\nok\n<<<END ok.py>>>\n' + b'### <<<FILE a.py>>>\nx\n### <<<END a.py>>>\n', 1,
     ["splitfile: error: {src}:4: '### <<<FILE a.py>>>' is not a marker, so the file that line 6 closes would be lost: it carries Markdown decoration ('###' before it); a marker is plain text; write '<<<FILE a.py>>>'"]),
    ('numbered list markers', b'<<<FILE ok.py>>>\nok\n<<<END ok.py>>>\n' + b'1. <<<FILE a.py>>>\nx\n2. <<<END a.py>>>\n', 1,
     ["splitfile: error: {src}:4: '1. <<<FILE a.py>>>' is not a marker, so the file that line 6 closes would be lost: it carries Markdown decoration ('1.' before it); a marker is plain text; write '<<<FILE a.py>>>'"]),
    ('table cell markers', b'<<<FILE ok.py>>>\nok\n<<<END ok.py>>>\n' + b'| <<<FILE a.py>>> |\nx\n| <<<END a.py>>> |\n', 1,
     ["splitfile: error: {src}:4: '| <<<FILE a.py>>> |' is not a marker, so the file that line 6 closes would be lost: it carries Markdown decoration ('|' before it and '|' after it); a marker is plain text; write '<<<FILE a.py>>>'"]),
    ('bold markers, the END naming another spelling', b'<<<FILE ok.py>>>\nok\n<<<END ok.py>>>\n' + b'**<<<FILE src/a.py>>>**\nx\n**<<<END a.py>>>**\n', 1,
     ["splitfile: error: {src}:4: '**<<<FILE src/a.py>>>**' is not a marker, so the file that line 6 closes would be lost: it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<FILE src/a.py>>>'"]),
    ('a close with a trailing no-break space', b'<<<FILE a.py>>>\nx\n<<<END a.py>>>\xc2\xa0\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END a.py>>>\\xa0' was probably meant to close it, but it has an invisible character (a non-breaking or zero-width space) around it; write '<<<END a.py>>>'"]),
    ('warnings and errors in line order', b'<<<FILE ../b.py>>>\nx\n<<<END ../b.py>>>\n**<<<FILE c.py>>>**\n<<<FILE d.py>>>\ny\n', 1,
     ["splitfile: error: {src}:1: invalid name '../b.py': it has a '..' part",
      "splitfile: warning: {src}:4: '**<<<FILE c.py>>>**' looks like a marker but is not one, so it was ignored: it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<FILE c.py>>>'",
      "splitfile: error: {src}:5: block 'd.py' is never closed: no '<<<END d.py>>>' line follows"]),
    ('bare <<<END>>>', b'<<<FILE stats.py>>>\nimport math\n\ndef mean(xs):\n<<<END>>>\n', 1,
     ["splitfile: error: {src}:1: block 'stats.py' is never closed: no '<<<END stats.py>>>' line follows; line 5 '<<<END>>>' does not name the file; write '<<<END stats.py>>>'"]),
    ('<<<END FILE>>>', b'<<<FILE a.py>>>\nx = 1\n<<<END FILE>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END FILE>>>' does not name the file; write '<<<END a.py>>>'"]),
    ('<<<END_FILE>>>', b'<<<FILE a.py>>>\nx = 1\n<<<END_FILE>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END_FILE>>>' does not name the file; write '<<<END a.py>>>'"]),
    ('<<<ENDFILE>>>', b'<<<FILE a.py>>>\nx = 1\n<<<ENDFILE>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<ENDFILE>>>' does not name the file; write '<<<END a.py>>>'"]),
    ('<<<END FILE: a>>>', b'<<<FILE a.py>>>\nx = 1\n<<<END FILE: a.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END FILE: a.py>>>' does not name the file; write '<<<END a.py>>>'"]),
    ('unnamed closes counted', b'<<<FILE a.py>>>\n1\n<<<END>>>\n<<<FILE b.py>>>\n2\n<<<END>>>\n<<<FILE c.py>>>\n3\n<<<END>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END>>>' does not name the file; write '<<<END a.py>>>'; the block holds 4 more lines that may be meant to end it"]),
    ('close naming another spelling', b'<<<FILE src/util.py>>>\ndef f(): pass\n<<<END util.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'src/util.py' is never closed: no '<<<END src/util.py>>>' line follows; line 3 '<<<END util.py>>>' names 'util.py', not 'src/util.py'; write '<<<END src/util.py>>>'"]),
    ('close naming ./ spelling', b'<<<FILE src/util.py>>>\ndef f(): pass\n<<<END ./src/util.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'src/util.py' is never closed: no '<<<END src/util.py>>>' line follows; line 3 '<<<END ./src/util.py>>>' names './src/util.py', not 'src/util.py'; write '<<<END src/util.py>>>'"]),
    ('close glued to the last body line', b'<<<FILE a.py>>>\ndef add(a, b):\n    return a + b<<<END a.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 ends with the close marker; a marker must be alone on its line"]),
    ('close with other case', b'<<<FILE a.py>>>\nx\n<<<end a.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<end a.py>>>' was probably meant to close it, but it has 'end' where a marker has 'END': case matters; write '<<<END a.py>>>'"]),
    ('close with a trailing blank', b'<<<FILE a.py>>>\nx\n<<<END a.py>>> \n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '<<<END a.py>>> ' was probably meant to close it, but it has a trailing blank, which is invisible; write '<<<END a.py>>>'"]),
    ('close indented', b'<<<FILE a.py>>>\nx\n  <<<END a.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '  <<<END a.py>>>' was probably meant to close it, but it is indented (2 leading blanks); write '<<<END a.py>>>'"]),
    ('close in bold', b'<<<FILE a.py>>>\nx\n**<<<END a.py>>>**\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 '**<<<END a.py>>>**' was probably meant to close it, but it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<END a.py>>>'"]),
    ('another FILE line', b'<<<FILE a.py>>>\nx\n<<<FILE b.py>>>\ny\n<<<END b.py>>>\n', 1,
     ["splitfile: error: {src}:1: block 'a.py' is never closed: no '<<<END a.py>>>' line follows; line 3 starts another block: is the END line above it missing? write '<<<END a.py>>>' before it"]),
    ('quoted name', b'<<<FILE "src/util.py">>>\nx\n<<<END "src/util.py">>>\n', 1,
     ['splitfile: error: {src}:1: invalid name \'"src/util.py"\': it is in quotes, not a path; write \'<<<FILE src/util.py>>>\'']),
    ('backticked name', b'<<<FILE `a.py`>>>\nx\n<<<END `a.py`>>>\n', 1,
     ["splitfile: error: {src}:1: invalid name '`a.py`': it is in backticks, not a path; write '<<<FILE a.py>>>'"]),
    ('attribute name, unnamed close', b'<<<FILE path="a.py">>>\nx\n<<<END FILE>>>\n', 1,
     ['splitfile: error: {src}:1: invalid name \'path="a.py"\': it is in attribute form, not a path; write \'<<<FILE a.py>>>\'',
      'splitfile: error: {src}:1: block \'path="a.py"\' is never closed; line 3 \'<<<END FILE>>>\' does not name the file; write \'<<<END a.py>>>\'']),
    ('attribute name closed by the meant name', b'<<<FILE path="a.py">>>\nx\n<<<END a.py>>>\n', 1,
     ['splitfile: error: {src}:1: invalid name \'path="a.py"\': it is in attribute form, not a path; write \'<<<FILE a.py>>>\'',
      'splitfile: error: {src}:1: block \'path="a.py"\' is never closed; line 3 \'<<<END a.py>>>\' closes the name meant; write \'<<<FILE a.py>>>\' at line 1']),
    ('name with attributes', b'<<<FILE name=a.py lang=py>>>\nx\n<<<END name=a.py lang=py>>>\n', 1,
     ["splitfile: error: {src}:1: invalid name 'name=a.py lang=py': it is in attribute form, not a path; write '<<<FILE a.py>>>'"]),
    ('hive folder is valid', b'<<<FILE year=2024/a.csv>>>\n1,2\n<<<END year=2024/a.csv>>>\n', 0,
     []),
    ('trailing blank on both markers', b'<<<FILE src/util.py>>> \nx\n<<<END src/util.py>>> \n<<<FILE b>>>\n<<<END b>>>\n', 1,
     ["splitfile: error: {src}:1: '<<<FILE src/util.py>>> ' is not a marker, so the file that line 3 closes would be lost: it has a trailing blank, which is invisible; write '<<<FILE src/util.py>>>'"]),
    ('trailing blank on FILE, exact END', b'<<<FILE a.py>>> \nx\n<<<END a.py>>>\n', 1,
     ["splitfile: error: {src}:1: '<<<FILE a.py>>> ' is not a marker, so the file that line 3 closes would be lost: it has a trailing blank, which is invisible; write '<<<FILE a.py>>>'",
      "splitfile: error: {src}:3: '<<<END a.py>>>' closes no open block: line 1 was meant to open it"]),
    ('colon on both markers', b'<<<FILE: a.py>>>\nx\n<<<END: a.py>>>\n<<<FILE b>>>\n<<<END b>>>\n', 1,
     ["splitfile: error: {src}:1: '<<<FILE: a.py>>>' is not a marker, so the file that line 3 closes would be lost: it has a colon after FILE; write '<<<FILE a.py>>>'"]),
    ('bold on both markers', b'**<<<FILE a.py>>>**\nx\n**<<<END a.py>>>**\n<<<FILE b>>>\n<<<END b>>>\n', 1,
     ["splitfile: error: {src}:1: '**<<<FILE a.py>>>**' is not a marker, so the file that line 3 closes would be lost: it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<FILE a.py>>>'"]),
    ('indented block', b'    <<<FILE a.py>>>\n    x = 1\n    <<<END a.py>>>\n<<<FILE b>>>\n<<<END b>>>\n', 1,
     ["splitfile: error: {src}:1: '    <<<FILE a.py>>>' is not a marker, so the file that line 3 closes would be lost: it is indented (4 leading blanks) and so is the next line: remove the indentation from every line of the block; write '<<<FILE a.py>>>'"]),
    ('near miss: indented, the next line not', b'    <<<FILE a>>>\nx\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '    <<<FILE a>>>' looks like a marker but is not one, so it was ignored: it is"
      " indented (4 leading blanks); write '<<<FILE a>>>'"]),
    ('near miss: indented, then a block', b'    <<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n    more prose\n', 0,
     ["splitfile: warning: {src}:1: '    <<<FILE a>>>' looks like a marker but is not one, so it was ignored: it is"
      " indented (4 leading blanks); write '<<<FILE a>>>'"]),
    ('near miss: leading blank', b' <<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: ' <<<FILE a>>>' looks like a marker but is not one, so it was ignored: it has a leading blank, which is invisible; write '<<<FILE a>>>'"]),
    ('near miss: lower case', b'<<<file a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<<file a>>>' looks like a marker but is not one, so it was ignored: it has 'file' where a marker has 'FILE': case matters; write '<<<FILE a>>>'"]),
    ('near miss: no space', b'<<<FILEa>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<<FILEa>>>' looks like a marker but is not one, so it was ignored: it has no space after FILE; write '<<<FILE a>>>'"]),
    ('near miss: two <', b'<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<FILE a>>>' looks like a marker but is not one, so it was ignored: it starts with 2 '<' where a marker has 3; write '<<<FILE a>>>'"]),
    ('near miss: four <', b'<<<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<<<FILE a>>>' looks like a marker but is not one, so it was ignored: it starts with 4 '<' where a marker has 3; write '<<<FILE a>>>'"]),
    ('near miss: missing >', b'<<<FILE a>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<<FILE a>>' looks like a marker but is not one, so it was ignored: it ends with 2 '>' where a marker has 3; write '<<<FILE a>>>'"]),
    ('near miss: code span', b'`<<<FILE a>>>`\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '`<<<FILE a>>>`' looks like a marker but is not one, so it was ignored: it carries Markdown decoration ('`' before it and '`' after it); a marker is plain text; write '<<<FILE a>>>'"]),
    ('near miss: list item', b'- <<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '- <<<FILE a>>>' looks like a marker but is not one, so it was ignored: it carries Markdown decoration ('-' before it); a marker is plain text; write '<<<FILE a>>>'"]),
    ('near miss: quote', b'> <<<END a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '> <<<END a>>>' looks like a marker but is not one, so it was ignored: it carries Markdown decoration ('>' before it); a marker is plain text; write '<<<END a>>>'"]),
    ('near miss: blank after <<<', b'<<< FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<< FILE a>>>' looks like a marker but is not one, so it was ignored: it has a blank after '<<<'; write '<<<FILE a>>>'"]),
    ('near miss: extra CR', b'<<<FILE a>>>\r\r\n<<<FILE b>>>\n<<<END b>>>\n', 0,
     ["splitfile: warning: {src}:1: '<<<FILE a>>>\\x0d' looks like a marker but is not one, so it was ignored: it has an extra carriage return (CR) at its end, which is invisible; write '<<<FILE a>>>'"]),
    ('near miss: unnamed END outside', b'<<<FILE b>>>\n<<<END b>>>\n<<<END>>>\n', 0,
     ["splitfile: warning: {src}:3: '<<<END>>>' looks like a marker but is not one, so it was ignored: it does not name the file; write '<<<END NAME>>>' with the name of the file it closes"]),
    ('fenced body', b'<<<FILE a.py>>>\n```python\nx = 1\n```\n<<<END a.py>>>\n', 0,
     ["splitfile: warning: {src}:2: the body of 'a.py' starts with a Markdown fence (line 2) and ends with one (line 4); both are kept, as bodies are exact: delete those two lines if they are not part of the file"]),
    ('fenced CRLF body', b'<<<FILE a.py>>>\r\n~~~\r\nx = 1\r\n~~~\r\n<<<END a.py>>>\r\n', 0,
     ["splitfile: warning: {src}:2: the body of 'a.py' starts with a Markdown fence (line 2) and ends with one (line 4); both are kept, as bodies are exact: delete those two lines if they are not part of the file"]),
    ('one fence line is no fenced body', b'<<<FILE a.md>>>\n```\n<<<END a.md>>>\n', 0,
     []),
    ('repomix', b'This file is a merged representation.\n<file path="src/a.py">\nx = 1\n</file>\n', 1,
     ['splitfile: error: {src}: no \'<<<FILE name>>>\' block found; nothing to write. Line 2 looks like repomix XML (\'<file path="...">\'), another bundle format: convert it to \'<<<FILE name>>>\' ... \'<<<END name>>>\' blocks']),
    ('repomix plain text', b'================\nFile: src/a.py\n================\nx = 1\n', 1,
     ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 2 looks like repomix plain"
      " text ('File: name' between '=' lines), another bundle format: convert it to '<<<FILE name>>>' ..."
      " '<<<END name>>>' blocks"]),
    ('txtar', b'comment\n-- a.py --\nx = 1\n-- b.py --\ny\n', 1,
     ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 2 looks like txtar ('-- name --'), another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"]),
    ('=== FILE ===', b'=== FILE: a.py ===\nx = 1\n', 1,
     ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 1 looks like '=== FILE: name ===' sections, another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"]),
    ('files-to-prompt', b'src/a.py\n---\nx = 1\n\n---\n', 1,
     ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 2 looks like files-to-prompt ('name', then '---'), another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"]),
    ('warning before a structure error', b'<<<FILE a.py>>>\t\n<<<FILE b>>>\n<<<END b>>>\n<<<END c>>>\n', 1,
     ["splitfile: warning: {src}:1: '<<<FILE a.py>>>\\x09' looks like a marker but is not one, so it was ignored: it has a trailing tab, which is invisible; write '<<<FILE a.py>>>'",
      "splitfile: error: {src}:4: '<<<END c>>>' closes no open block; is the <<<FILE line above it mistyped?"]),
    ('name error before a structure error', b'<<<FILE ../a>>>\n<<<END ../a>>>\n<<<FILE b>>>\n', 1,
     ["splitfile: error: {src}:1: invalid name '../a': it has a '..' part",
      "splitfile: error: {src}:3: block 'b' is never closed: no '<<<END b>>>' line follows"]),
    ('bad name on a last line without newline', b'<<<FILE ok>>>\n<<<END ok>>>\n<<<FILE ../x>>>', 1,
     ["splitfile: error: {src}:3: invalid name '../x': it has a '..' part",
      "splitfile: error: {src}:3: block '../x' is never closed: no '<<<END ../x>>>' line follows"]),
    ('stray close', b'hi\n<<<END a>>>\n', 1,
     ["splitfile: error: {src}:2: '<<<END a>>>' closes no open block; is the <<<FILE line above it mistyped?"]),
    ('no block', b"I can't do that.\n", 1,
     ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write"]),
]

CHUNK_SIZES = [None, 1, 3, 7]


class MistakeTableTest(TempDirTest):
    def run_both_ways(self, data: bytes, chunk: int | None, argv: list[str]) -> list[tuple[str, object]]:
        """Run DATA from a file and from stdin with reads of CHUNK bytes; return (source, result) pairs."""
        saved = splitfile.CHUNK_SIZE
        if chunk:
            splitfile.CHUNK_SIZE = chunk  # type: ignore[misc]
        try:
            from_file = run([self.write_bundle(data), *argv])
            from_pipe = run(argv, stdin=data)
        finally:
            splitfile.CHUNK_SIZE = saved  # type: ignore[misc]
        return [("bundle.txt", from_file), ("<stdin>", from_pipe)]

    def test_the_table_covers_spec_1_10(self) -> None:
        self.assertGreaterEqual(len(MISTAKES), 45)

    def test_each_mistake_gets_its_exact_message_in_both_modes_at_any_read_size(self) -> None:
        for title, data, code, lines in MISTAKES:
            for chunk in CHUNK_SIZES:
                shutil.rmtree(self.outer)
                make_tree(self.dest, {"keep.txt": b"mine\n"})
                before = snapshot(self.outer)
                for source, result in self.run_both_ways(data, chunk, ["-o", self.dest]):
                    with self.subTest(title, chunk=chunk, source=source):
                        expected = [line.replace("{src}", source) for line in lines]
                        self.assertEqual((result.code, result.err.splitlines()), (code, expected))  # type: ignore[attr-defined]
                        self.assertEqual(result.out, b"")  # type: ignore[attr-defined]
                        if code:
                            self.assertUnchanged(before)
                shutil.rmtree(self.outer)
                os.makedirs(self.dest)

    def test_list_and_dry_run_report_the_same(self) -> None:
        for title, data, code, lines in MISTAKES:
            for argv in (["-l"], ["-n", "-o", self.dest]):
                with self.subTest(title, argv=argv):
                    result = run([self.write_bundle(data), *argv])
                    self.assertEqual(result.code, code)
                    self.assertEqual(result.err.splitlines(), [line.replace("{src}", "bundle.txt") for line in lines])

    def test_a_fenced_body_is_still_written_exactly(self) -> None:
        data = b"<<<FILE a.py>>>\n```python\nx = 1\n```\n<<<END a.py>>>\n"
        result = run([self.write_bundle(data), "-o", self.dest])
        self.assertEqual(result.code, 0)
        self.assertEqual(files_of(self.dest), {"a.py": b"```python\nx = 1\n```\n"})


class EveryProblemInOneRunTest(TempDirTest):
    """SPEC 1.10, last line, and SPEC 2: all problems of a run, in line order."""

    def test_a_conflict_before_a_bad_name_is_still_reported(self) -> None:
        make_tree(self.dest, {"a.txt": b"old\n"})
        before = snapshot(self.outer)
        data = bundle(("a.txt", b"new\n"), ("b.txt", b""), ("c.txt", b""), ("../d", b""))
        for argv in (["-o", self.dest], ["-n", "-o", self.dest]):
            with self.subTest(argv=argv):
                result = run([self.write_bundle(data), *argv])
                self.assertEqual(result.code, 1)
                self.assertEqual(result.err.splitlines(), [
                    "splitfile: error: bundle.txt:1: 'a.txt' exists with other content; use -f to replace it",
                    "splitfile: error: bundle.txt:8: invalid name '../d': it has a '..' part",
                ])
                self.assertUnchanged(before)

    def test_a_folder_at_a_target_then_a_structure_error(self) -> None:
        os.makedirs(os.path.join(self.dest, "a.txt"))
        before = snapshot(self.outer)
        data = bundle(("a.txt", b"new\n")) + b"<<<END stray>>>\n"
        result = run([self.write_bundle(data), "-o", self.dest])
        self.assertEqual(result.code, 1)
        lines = result.err.splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith("splitfile: error: bundle.txt:1: cannot write 'a.txt': "), lines)
        self.assertEqual(lines[1], "splitfile: error: bundle.txt:4: '<<<END stray>>>' closes no open block;"
                                   " is the <<<FILE line above it mistyped?")
        self.assertUnchanged(before)

    def test_a_near_miss_before_a_stray_close_is_printed_first(self) -> None:
        data = b"<<<FILE a.py>>> \n<<<FILE b>>>\n<<<END b>>>\n<<<END a.py>>>\n"
        for chunk in CHUNK_SIZES:
            with self.subTest(chunk=chunk):
                saved = splitfile.CHUNK_SIZE
                splitfile.CHUNK_SIZE = chunk or saved  # type: ignore[misc]
                try:
                    result = run([], stdin=data)
                finally:
                    splitfile.CHUNK_SIZE = saved  # type: ignore[misc]
                self.assertEqual(result.err.splitlines(), [
                    "splitfile: warning: <stdin>:1: '<<<FILE a.py>>> ' looks like a marker but is not one, so it was"
                    " ignored: it has a trailing blank, which is invisible; write '<<<FILE a.py>>>'",
                    "splitfile: error: <stdin>:4: '<<<END a.py>>>' closes no open block; is the <<<FILE line above"
                    " it mistyped?",
                ])
