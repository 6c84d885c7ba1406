"""Realistic whole bundles, written the way prompts, agent tools and models write them (issue 10).

Each has its expected result: the tree it makes, or the exact stderr and exit
status, from a bundle file and from stdin; a failing one changes nothing.
"""

from __future__ import annotations

import shutil

from tests.helpers import TempDirTest, files_of, make_tree, run, snapshot

# title, bundle, exit status, exact stderr lines ({src}: the source in messages), tree made (exit 0)
BUNDLES = [
    ('chat answer, prose before and after, three files',
     b'Sure! Here is a small CLI that counts words.\n\n<<<FILE wc/__init__.py>>>\n<<<END wc/__init__.py>>>\n<<<FILE wc/__main__.py>>>\nimport sys\nfrom wc.count import count\n\nprint(count(sys.stdin.read()))\n<<<END wc/__main__.py>>>\n<<<FILE wc/count.py>>>\ndef count(text):\n    return len(text.split())\n<<<END wc/count.py>>>\n\nRun it with `python -m wc < file.txt`. Let me know if you need tests!\n',
     0, [],
     {'wc/__init__.py': b'', 'wc/__main__.py': b'import sys\nfrom wc.count import count\n\nprint(count(sys.stdin.read()))\n', 'wc/count.py': b'def count(text):\n    return len(text.split())\n'}),
    ('CRLF answer from a Windows tool',
     b'Files:\r\n<<<FILE app.ps1>>>\r\nWrite-Host "hi"\r\n<<<END app.ps1>>>\r\n<<<FILE README.md>>>\r\n# App\r\n\r\nRun app.ps1.\r\n<<<END README.md>>>\r\nDone.\r\n',
     0, [],
     {'README.md': b'# App\r\n\r\nRun app.ps1.\r\n', 'app.ps1': b'Write-Host "hi"\r\n'}),
    ('answer inside a Markdown fence, markers exact',
     b'Here you go:\n\n```\n<<<FILE src/main.rs>>>\nfn main() {\n    println!("hi");\n}\n<<<END src/main.rs>>>\n<<<FILE Cargo.toml>>>\n[package]\nname = "hi"\nversion = "0.1.0"\n<<<END Cargo.toml>>>\n```\n',
     0, [],
     {'Cargo.toml': b'[package]\nname = "hi"\nversion = "0.1.0"\n', 'src/main.rs': b'fn main() {\n    println!("hi");\n}\n'}),
    ('a bundle that carries a bundle',
     b'<<<FILE tests/data/sample.txt>>>\n<<<FILE inner.py>>>\nprint(1)\n<<<END inner.py>>>\n<<<END tests/data/sample.txt>>>\n<<<FILE tests/test_sample.py>>>\nassert True\n<<<END tests/test_sample.py>>>\n',
     0, [],
     {'tests/data/sample.txt': b'<<<FILE inner.py>>>\nprint(1)\n<<<END inner.py>>>\n', 'tests/test_sample.py': b'assert True\n'}),
    ('prompt-style bare <<<END>>> closes',
     b'<<<FILE stats.py>>>\nimport math\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n<<<END>>>\n<<<FILE test_stats.py>>>\nfrom stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n<<<END>>>\n',
     1, ["splitfile: error: {src}:1: block 'stats.py' is never closed: no '<<<END stats.py>>>' line follows; line 7 '<<<END>>>' does not name the file; write '<<<END stats.py>>>'; the block holds 2 more lines that may be meant to end it"],
     None),
    ('generator style <<<FILE: path>>> ... <<<END_FILE>>>',
     b'Generated 2 files.\n<<<FILE: src/a.ts>>>\nexport const a = 1;\n<<<END_FILE>>>\n<<<FILE: src/b.ts>>>\nexport const b = 2;\n<<<END_FILE>>>\n',
     1, ["splitfile: error: {src}:2: '<<<FILE: src/a.ts>>>' is not a marker, so the file that line 4 closes would be lost: it has a colon after FILE; write '<<<FILE src/a.ts>>>'",
         "splitfile: error: {src}:5: '<<<FILE: src/b.ts>>>' is not a marker, so the file that line 7 closes would be lost: it has a colon after FILE; write '<<<FILE src/b.ts>>>'",
         "splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write"],
     None),
    ('attribute style <<<FILE path="x">>> ... <<<END FILE>>>',
     b'<<<FILE path="src/util.py">>>\ndef helper():\n    return 42\n<<<END FILE>>>\n<<<FILE path="src/app.py">>>\nfrom util import helper\n<<<END FILE>>>\n',
     1, ['splitfile: error: {src}:1: invalid name \'path="src/util.py"\': it is in attribute form, not a path; write \'<<<FILE src/util.py>>>\'',
         'splitfile: error: {src}:1: block \'path="src/util.py"\' is never closed; line 4 \'<<<END FILE>>>\' does not name the file; write \'<<<END src/util.py>>>\'; the block holds 2 more lines that may be meant to end it'],
     None),
    ('quoted names closed with the same quotes',
     b'<<<FILE "src/util.py">>>\nx = 1\n<<<END "src/util.py">>>\n<<<FILE `README.md`>>>\n# r\n<<<END `README.md`>>>\n',
     1, ['splitfile: error: {src}:1: invalid name \'"src/util.py"\': it is in quotes, not a path; write \'<<<FILE src/util.py>>>\'',
         "splitfile: error: {src}:4: invalid name '`README.md`': it is in backticks, not a path; write '<<<FILE README.md>>>'"],
     None),
    ('bold markers in a chat answer',
     b'Here are the files:\n\n**<<<FILE index.html>>>**\n<!doctype html>\n<p>hi</p>\n**<<<END index.html>>>**\n\n**<<<FILE style.css>>>**\np { color: red; }\n**<<<END style.css>>>**\n',
     1, ["splitfile: error: {src}:3: '**<<<FILE index.html>>>**' is not a marker, so the file that line 6 closes would be lost: it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<FILE index.html>>>'",
         "splitfile: error: {src}:8: '**<<<FILE style.css>>>**' is not a marker, so the file that line 10 closes would be lost: it carries Markdown decoration ('**' before it and '**' after it); a marker is plain text; write '<<<FILE style.css>>>'",
         "splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write"],
     None),
    ('markers indented under a list item',
     b'1. Create the module:\n\n    <<<FILE pkg/mod.py>>>\n    VALUE = 1\n    <<<END pkg/mod.py>>>\n\n2. Add a test:\n\n    <<<FILE tests/test_mod.py>>>\n    from pkg.mod import VALUE\n    <<<END tests/test_mod.py>>>\n',
     1, ["splitfile: error: {src}:3: '    <<<FILE pkg/mod.py>>>' is not a marker, so the file that line 5 closes would be lost: it is indented (4 leading blanks) and so is the next line: remove the indentation from every line of the block; write '<<<FILE pkg/mod.py>>>'",
         "splitfile: error: {src}:9: '    <<<FILE tests/test_mod.py>>>' is not a marker, so the file that line 11 closes would be lost: it is indented (4 leading blanks) and so is the next line: remove the indentation from every line of the block; write '<<<FILE tests/test_mod.py>>>'",
         "splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write"],
     None),
    ('invisible trailing blanks from a copy-paste',
     b'<<<FILE src/util.py>>> \ndef f():\n    pass\n<<<END src/util.py>>> \n<<<FILE src/app.py>>>\nimport util\n<<<END src/app.py>>>\n',
     1, ["splitfile: error: {src}:1: '<<<FILE src/util.py>>> ' is not a marker, so the file that line 4 closes would be lost: it has a trailing blank, which is invisible; write '<<<FILE src/util.py>>>'"],
     None),
    ('bodies fenced inside blocks',
     b"<<<FILE app.py>>>\n```python\nprint('hi')\n```\n<<<END app.py>>>\n<<<FILE notes.md>>>\n# Notes\n\n```sh\nls\n```\n<<<END notes.md>>>\n",
     0, ["splitfile: warning: {src}:2: the body of 'app.py' starts with a Markdown fence (line 2) and ends with one (line 4); both are kept, as bodies are exact: delete those two lines if they are not part of the file"],
     {'app.py': b"```python\nprint('hi')\n```\n", 'notes.md': b'# Notes\n\n```sh\nls\n```\n'}),
    ('close glued to the last line',
     b'<<<FILE calc.py>>>\ndef add(a, b):\n    return a + b<<<END calc.py>>>\n<<<FILE main.py>>>\nprint(1)\n<<<END main.py>>>\n',
     1, ["splitfile: error: {src}:1: block 'calc.py' is never closed: no '<<<END calc.py>>>' line follows; line 3 ends with the close marker; a marker must be alone on its line; the block holds 1 more line that may be meant to end it"],
     None),
    ('close with a short name',
     b'Updated file:\n<<<FILE src/util/strings.py>>>\ndef upper(s):\n    return s.upper()\n<<<END strings.py>>>\n',
     1, ["splitfile: error: {src}:2: block 'src/util/strings.py' is never closed: no '<<<END src/util/strings.py>>>' line follows; line 5 '<<<END strings.py>>>' names 'strings.py', not 'src/util/strings.py'; write '<<<END src/util/strings.py>>>'"],
     None),
    ('lower-case markers',
     b'<<<file a.txt>>>\nhello\n<<<end a.txt>>>\n<<<FILE b.txt>>>\nworld\n<<<END b.txt>>>\n',
     1, ["splitfile: error: {src}:1: '<<<file a.txt>>>' is not a marker, so the file that line 3 closes would be lost: it has 'file' where a marker has 'FILE': case matters; write '<<<FILE a.txt>>>'"],
     None),
    ('repomix XML output',
     b'This file is a merged representation of the entire codebase.\n<files>\n<file path="src/index.js">\nconsole.log(1)\n</file>\n</files>\n',
     1, ['splitfile: error: {src}: no \'<<<FILE name>>>\' block found; nothing to write. Line 3 looks like repomix XML (\'<file path="...">\'), another bundle format: convert it to \'<<<FILE name>>>\' ... \'<<<END name>>>\' blocks'],
     None),
    ('txtar archive',
     b'Test data.\n-- go.mod --\nmodule example.com/x\n-- main.go --\npackage main\n',
     1, ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 2 looks like txtar ('-- name --'), another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"],
     None),
    ('files-to-prompt output',
     b"src/app.py\n---\nprint('hi')\n\n---\nsrc/util.py\n---\nx = 1\n\n---\n",
     1, ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 2 looks like files-to-prompt ('name', then '---'), another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"],
     None),
    ('=== FILE === sections',
     b'=== FILE: src/a.py ===\nx = 1\n=== FILE: src/b.py ===\ny = 2\n',
     1, ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write. Line 1 looks like '=== FILE: name ===' sections, another bundle format: convert it to '<<<FILE name>>>' ... '<<<END name>>>' blocks"],
     None),
    ('the model refused',
     b"I'm sorry, but I can't help with that request.\n",
     1, ["splitfile: error: {src}: no '<<<FILE name>>>' block found; nothing to write"],
     None),
    ('answer cut off mid-file',
     b'<<<FILE server.py>>>\nimport http.server\n\nclass Handler(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n',
     1, ["splitfile: error: {src}:1: block 'server.py' is never closed: no '<<<END server.py>>>' line follows"],
     None),
    ('path traversal and a repository hook',
     b'<<<FILE ../../.bashrc>>>\necho owned\n<<<END ../../.bashrc>>>\n<<<FILE .git/hooks/pre-commit>>>\nrm -rf ~\n<<<END .git/hooks/pre-commit>>>\n<<<FILE ok.txt>>>\nfine\n<<<END ok.txt>>>\n',
     1, ["splitfile: error: {src}:1: invalid name '../../.bashrc': it has a '..' part",
         "splitfile: error: {src}:4: invalid name '.git/hooks/pre-commit': part '.git' is a version-control folder"],
     None),
    ('two READMEs differing only in case',
     b'<<<FILE README.md>>>\n# A\n<<<END README.md>>>\n<<<FILE readme.md>>>\n# B\n<<<END readme.md>>>\n',
     1, ["splitfile: error: {src}:4: invalid name 'readme.md': 'readme.md' and 'README.md' (line 1) differ only in case or Unicode form; they would overwrite each other on macOS and Windows"],
     None),
    ('Hive-partitioned data files',
     b'<<<FILE data/year=2024/month=01/part.csv>>>\na,b\n1,2\n<<<END data/year=2024/month=01/part.csv>>>\n<<<FILE data/year=2024/month=02/part.csv>>>\na,b\n3,4\n<<<END data/year=2024/month=02/part.csv>>>\n',
     0, [],
     {'data/year=2024/month=01/part.csv': b'a,b\n1,2\n', 'data/year=2024/month=02/part.csv': b'a,b\n3,4\n'}),
    ('a stray END after a mistyped FILE line',
     b'Here is the fix:\n<<<FILE  src/a.py>>\nx = 2\n<<<END src/a.py>>>\n',
     1, ["splitfile: error: {src}:2: '<<<FILE  src/a.py>>' is not a marker, so the file that line 4 closes would be lost: it ends with 2 '>' where a marker has 3; it has more than one blank after FILE; write '<<<FILE src/a.py>>>'",
         "splitfile: error: {src}:4: '<<<END src/a.py>>>' closes no open block: line 2 was meant to open it"],
     None),
    ('a good block beside a generator-style one: no file dropped with exit 0',
     b'<<<FILE: config.yml>>>\nport: 80\n<<<END_FILE>>>\n<<<FILE app.py>>>\nprint(1)\n<<<END app.py>>>\n',
     1, ["splitfile: error: {src}:1: '<<<FILE: config.yml>>>' is not a marker, so the file that line 3 closes would be lost: it has a colon after FILE; write '<<<FILE config.yml>>>'"],
     None),
    ('CRLF bundle with a never-closed block and a CRLF close of another case',
     b'<<<FILE a.txt>>>\r\none\r\n<<<END A.txt>>>\r\n<<<FILE b.txt>>>\r\ntwo\r\n<<<END b.txt>>>\r\n',
     1, ["splitfile: error: {src}:1: block 'a.txt' is never closed: no '<<<END a.txt>>>' line follows; line 3 '<<<END A.txt>>>' was probably meant to close it, but the name differs in case; write '<<<END a.txt>>>'; the block holds 1 more line that may be meant to end it"],
     None),
]


class RealisticBundleTest(TempDirTest):
    def test_there_are_at_least_twenty(self) -> None:
        self.assertGreaterEqual(len(BUNDLES), 20)

    def test_each_bundle_ends_as_a_user_needs(self) -> None:
        for title, data, code, lines, tree in BUNDLES:
            for source in ("bundle.txt", "<stdin>"):
                with self.subTest(title, source=source):
                    shutil.rmtree(self.outer)
                    make_tree(self.dest, {"keep.txt": b"mine\n"})
                    before = snapshot(self.outer)
                    argv = ["-o", self.dest]
                    result = run([self.write_bundle(data), *argv]) if source == "bundle.txt" else run(argv, stdin=data)
                    self.assertEqual(result.err.splitlines(), [line.replace("{src}", source) for line in lines])
                    self.assertEqual(result.code, code)
                    if code:
                        self.assertUnchanged(before)
                    else:
                        self.assertEqual(files_of(self.dest), dict(tree, **{"keep.txt": b"mine\n"}))
