"""Randomized tests, seeded so that CI is reproducible.

SPLITFILE_FUZZ_SEED and SPLITFILE_FUZZ_COUNT override the seed and the number
of cases; the long campaign is `SPLITFILE_FUZZ_COUNT=100000 python -m unittest
tests.test_fuzz`. Each case is checked against a reference parser written
from SPEC 1 line by line, independent of splitfile's streaming one.
"""

from __future__ import annotations

import os
import random
import shutil
import unicodedata
import unittest

from tests.helpers import TempDirTest, files_of, leftovers, run, snapshot, splitfile

SEED = int(os.environ.get("SPLITFILE_FUZZ_SEED", "20261128"))
COUNT = int(os.environ.get("SPLITFILE_FUZZ_COUNT", "300"))


def reference(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Return the (name, body) blocks of DATA per SPEC 1, or None for a structure error."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return None
    lines, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        lines.append(data[pos:end])
        pos = end
    blocks: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    body: list[bytes] = []
    for line in lines:
        text = line[:-1] if line.endswith(b"\n") else line
        text = text[:-1] if text.endswith(b"\r") else text
        if name is None:
            if text.startswith(b"<<<FILE ") and text.endswith(b">>>"):
                name, body = text[8:-3], []
            elif text.startswith(b"<<<END ") and text.endswith(b">>>"):
                return None
        elif text == b"<<<END " + name + b">>>":
            blocks.append((name, b"".join(body)))
            name = None
        else:
            body.append(line)
    if name is not None or not blocks:
        return None
    return blocks


def reference_error_line(data: bytes) -> int | None:
    """Return the line SPEC 1.7 names for DATA's structure error (None: no line applies)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return 1
    name, opened = None, 0
    for number, line in enumerate(data.split(b"\n"), 1):
        text = line[:-1] if line.endswith(b"\r") else line
        if number == 1 and text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        if name is None:
            if text.startswith(b"<<<FILE ") and text.endswith(b">>>"):
                name, opened = text[8:-3], number
            elif text.startswith(b"<<<END ") and text.endswith(b">>>"):
                return number
        elif text == b"<<<END " + name + b">>>":
            name = None
    return opened if name is not None else None


def reference_meant(text: bytes) -> tuple[bytes, bytes] | None:
    """Return (FILE or END, name) that TEXT, a line outside blocks, is a near miss for (SPEC 1.8), or None."""
    core = text.strip(b" \t\v\f\r").lstrip(b" \t>*_`~-+").rstrip(b" \t*_`~")
    if not core.startswith(b"<<"):
        return None
    rest = core.lstrip(b"<").lstrip()
    for keyword in (b"FILE", b"END"):
        if rest[:len(keyword)].upper() == keyword:
            return keyword, rest[len(keyword):].lstrip(b":").strip().rstrip(b">").strip()
    return None


def reference_unnamed(name: bytes) -> bool:
    """Tell whether NAME of a close-like line names no file (SPEC 1.10: `<<<END>>>`, `<<<END_FILE>>>`, ...)."""
    word = name.lstrip(b"_ ").upper()
    return word in (b"", b"FILE") or word.startswith((b"FILE:", b"FILE "))


def reference_same_file(a: bytes, b: bytes) -> bool:
    """Tell whether names A and B are spellings of one file as models write them (quotes, './', case, basename)."""
    def plain(name: bytes) -> bytes:
        name = name.strip(b"\"'`")
        return (name[2:] if name.startswith(b"./") else name).lower()

    return plain(a) == plain(b) or plain(a).split(b"/")[-1] == plain(b).split(b"/")[-1]


def reference_loses_a_file(data: bytes) -> bool:
    """Tell whether a near-miss FILE line of DATA is closed by name outside any block (SPEC 1.10): a failure."""
    name: bytes | None = None
    meant: set[bytes] = set()
    for line in data.split(b"\n"):
        text = line[:-1] if line.endswith(b"\r") else line
        if name is not None:
            name = None if text == b"<<<END " + name + b">>>" else name
        elif text.startswith(b"<<<FILE ") and text.endswith(b">>>"):
            name, meant = text[8:-3], set()
        elif text.startswith(b"<<<END ") and text.endswith(b">>>") and any(
                reference_same_file(text[7:-3], one) for one in meant):
            return True
        else:
            near = reference_meant(text)
            if near and near[0] == b"FILE":
                meant.add(near[1])
            elif near and meant and (any(reference_same_file(near[1], one) for one in meant)
                                     or reference_unnamed(near[1])):
                return True
    return False


def expected_tree(data: bytes) -> dict[str, bytes] | None:
    """Return the files DATA must make in an empty folder, or None if the run must fail."""
    blocks = reference(data)
    if blocks is None or reference_loses_a_file(data):
        return None
    tree = {}
    for raw, body in blocks:
        name = raw.decode("utf-8", "surrogateescape")
        if splitfile.check_name(name) or reference_collides(name, tree):
            return None
        tree[name] = body
    return tree


def reference_collides(name: str, earlier: dict[str, bytes]) -> bool:
    """Tell whether NAME lands on the same file as an EARLIER name, or on its folder (SPEC 2), the slow way."""
    def key(text: str) -> tuple[str, ...]:
        return tuple(unicodedata.normalize("NFD", unicodedata.normalize("NFD", part).casefold())
                     for part in text.split("/"))

    mine = key(name)
    for other in map(key, earlier):
        shorter = min(len(mine), len(other))
        if mine[:shorter] == other[:shorter]:  # the same file, or one is the other's folder
            return True
    return False


PARTS = ["src", "a", "lib", "docs", "caf\u00e9", "x.py", "README.md", "\u65e5\u672c", "t-1", ".env", "n_2"]
LINES = [b"print('hi')", b"", b"    indented", b"<<<FILE other>>>", b"<<<END other>>>", b"<<<END x>>> ",
         b"<<<file x>>>", b"<<<END>>>", b"```python", b"```",
         b"\x00\xff binary", b"\xef\xbb\xbf", b"<<FILE near>>", b"text\r", b"<<<", b">>>", b"\t\t"]


def random_bundle(rng: random.Random) -> bytes:
    """Return a random valid bundle: prose, CRLF, nested markers, empty bodies."""
    out = []
    used: set[tuple[str, ...]] = set()
    index = splitfile.NameIndex()
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            out.append(rng.choice([b"Sure, here you go:\n", b"```\n", b"\n", b"> quote\n", b"# Heading\r\n"]))
        parts = [rng.choice(PARTS) + (str(rng.randint(0, 9)) if rng.random() < 0.5 else "")
                 for _ in range(rng.randint(1, 3))]
        name = "/".join(parts)
        if splitfile.check_name(name) or index.add(name, 0) or tuple(parts) in used:
            continue
        used.add(tuple(parts))
        raw = name.encode()
        eol = b"\r\n" if rng.random() < 0.3 else b"\n"
        body = b"".join(rng.choice(LINES) + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(0, 8)))
        out.append(b"<<<FILE " + raw + b">>>" + eol + body + b"<<<END " + raw + b">>>" + eol)
    if not any(chunk.startswith(b"<<<FILE ") for chunk in out):
        out.append(b"<<<FILE f>>>\n<<<END f>>>\n")
    return b"".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Return DATA with one random mutation: bytes flipped, lines cut, duplicated or swapped, markers swapped,
    or a block added whose name lands on an earlier one's file or folder."""
    lines = data.split(b"\n")
    kind = rng.randrange(9)
    if kind == 0 and data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if kind == 1 and len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    elif kind == 2:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == 3 and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 4:
        markers = [i for i, line in enumerate(lines) if line.startswith((b"<<<FILE ", b"<<<END "))]
        if len(markers) > 1:
            i, j = rng.sample(markers, 2)
            lines[i], lines[j] = lines[j], lines[i]
    elif kind == 5:
        return data[: rng.randrange(len(data) + 1)]
    elif kind == 7:
        opens = [i for i, line in enumerate(lines) if line.startswith(b"<<<FILE ")]
        if opens:  # the same name, in another case, as a folder, or its folder as a file; its folder made earlier
            i = rng.choice(opens)
            name = lines[i].rstrip(b"\r")[8:-3]
            folder = name.rpartition(b"/")[0]
            twin = rng.choice([name, name.upper(), name.swapcase(), name + b"/x", folder or name])
            lines.append(b"<<<FILE " + twin + b">>>\nx\n<<<END " + twin + b">>>")
            if folder and rng.random() < 0.5:
                sibling = folder + b"/sibling"
                lines.insert(i, b"<<<FILE " + sibling + b">>>\n<<<END " + sibling + b">>>")
    elif kind == 6:
        markers = [i for i, line in enumerate(lines) if line.startswith((b"<<<FILE ", b"<<<END "))]
        if markers:  # mistype a marker the way models do (SPEC 1.10)
            i = rng.choice(markers)
            both = [i] + [j for j in markers if j > i and lines[j] == b"<<<END " + lines[i].rstrip(b"\r")[8:]][:1]
            typo = rng.choice([
                lambda t: t.rstrip(b"\r") + b" ", lambda t: b"**" + t.rstrip(b"\r") + b"**", lambda t: b"    " + t,
                lambda t: t.replace(b"FILE ", b"FILE: ").replace(b"END ", b"END: "), lambda t: t[1:],
                lambda t: t.replace(b"FILE", b"file").replace(b"END", b"end"), lambda t: b"> " + t,
            ])
            for j in both if rng.random() < 0.5 else both[:1]:  # both: the file is lost unless it fails
                lines[j] = typo(lines[j])
    else:
        i = rng.randrange(len(lines))
        lines.insert(i, rng.choice([b"<<<FILE ../evil>>>", b"<<<END a>>>", b"<<<FILE A>>>", b"<<<FILE .git/x>>>",
                                    b"<<<file a>>>", b"<<<FILE a\x1b>>>", b"\xff\xfe", b"<<<FILE: a>>>",
                                    b"<<<END a>>> ", b"**<<<FILE a>>>**", b'<<<FILE "a">>>', b"<<<FILE a lang=py>>>"]))
    return b"\n".join(lines)


class ParserAgreesWithReferenceTest(unittest.TestCase):
    def test_random_bundles_and_mutations_parse_as_the_reference_says(self) -> None:
        rng = random.Random(SEED)
        for case in range(COUNT * 5):
            data = random_bundle(rng)
            if rng.random() < 0.5:
                data = mutate(rng, data)
            size = rng.choice([1, 2, 3, 7, 64, 1 << 20])
            whole = data  # with reread, the parser counts lines only when asked
            parser = splitfile.Parser((lambda a, b, whole=whole: [whole[a:b]]) if case % 2 else None)
            got: list[tuple[bytes, bytes]] = []
            try:
                events = []
                for i in range(0, max(len(data), 1), size):
                    events += parser.feed(data[i:i + size])
                events += parser.finish()
                parser.close()
            except splitfile.BundleError as exc:
                got = None  # type: ignore[assignment]
                self.assertEqual(exc.line, reference_error_line(data), data)
            else:
                for ev in events:
                    if isinstance(ev, splitfile.Open):
                        got.append((ev.name.encode("utf-8", "surrogateescape"), b""))
                    elif isinstance(ev, splitfile.Body):
                        got[-1] = (got[-1][0], got[-1][1] + ev.data)
            with self.subTest(seed=SEED, case=case):
                self.assertEqual(got, reference(data), data)


class RoundTripAndMutationTest(TempDirTest):
    def test_random_bundles_split_exactly_or_fail_cleanly(self) -> None:
        rng = random.Random(SEED + 1)
        bundle_path = os.path.join(self.tmp, "bundle.txt")
        outcomes = {0: 0, 1: 0}
        for case in range(COUNT):
            data = random_bundle(rng)
            if case % 2:
                data = mutate(rng, data)
            with open(bundle_path, "wb") as f:
                f.write(data)
            dest = os.path.join(self.outer, "dest")
            shutil.rmtree(self.outer)
            os.makedirs(dest)
            before = snapshot(self.outer)
            result = run(["bundle.txt", "-o", dest])
            expected = expected_tree(data)
            with self.subTest(seed=SEED, case=case, data=data):
                self.assertNotIn("Traceback", result.err)
                if expected is None:
                    self.assertEqual(result.code, 1)
                    lines = result.err.splitlines()
                    self.assertTrue(all(line.startswith("splitfile: ") for line in lines), result.err)
                    self.assertTrue(any(line.startswith("splitfile: error: bundle.txt") for line in lines))
                    self.assertEqual(snapshot(self.outer), before)
                else:
                    self.assertEqual(result.code, 0, result.err)
                    self.assertEqual(files_of(dest), {k.replace("/", os.sep): v for k, v in expected.items()})
                self.assertEqual(leftovers(self.outer), [])
            outcomes[result.code] = outcomes.get(result.code, 0) + 1
        if os.environ.get("SPLITFILE_REPORT"):
            print(f"\nfuzz through main(): seed {SEED}, {COUNT} cases, exit codes {outcomes}")
        self.assertGreater(outcomes[0], COUNT // 4)  # the generator makes real work too
        self.assertGreater(outcomes[1], COUNT // 10)


# Marker-like lines as prompts and models get them wrong (SPEC 1.10), for messages rather than trees.
MISTYPED = [
    b"<<<FILE a>>>", b"<<<END a>>>", b"<<<FILE a>>> ", b"<<<END a>>> ", b"<<<END>>>", b"<<<END FILE>>>",
    b"<<<FILE: a>>>", b"<<<END_FILE>>>", b"**<<<FILE a>>>**", b"    <<<FILE a>>>", b"    x", b"```", b"```python",
    b"x", b"", b'<<<FILE "a">>>', b'<<<END "a">>>', b'<<<FILE path="a">>>', b"<<<END a>>", b"<<FILE a>>>",
    b'<file path="a">', b"-- a --", b"---", b"a.py", b"=== FILE: a ===", b"<<<FILE >>>", b"<<<FILE>>>",
    b"\xff<<<FILE \xff>>>", b"<<<END \xff>>>", b"x<<<END a>>>", b"<<<end A>>>", b"<<<FILE b/a>>>", b"<<<END a/b>>>",
    b"\r", b"<<<FILE a>>>\r\r", b"~~~", b"> <<<END a>>>", b"<<<ENDFILE>>>", b"File: a", b"=" * 16, b"y" * 70000,
]


class LineModesAgreeTest(TempDirTest):
    def test_a_file_and_a_pipe_get_the_same_messages_at_any_read_size(self) -> None:
        """Lines re-read from a file and lines counted as they pass must name the same lines, in the same words."""
        rng = random.Random(SEED + 2)
        saved = splitfile.CHUNK_SIZE
        self.addCleanup(setattr, splitfile, "CHUNK_SIZE", saved)
        for case in range(COUNT):
            lines = [rng.choice(MISTYPED) for _ in range(rng.randint(0, 14))]
            data = b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b"")
            path = self.write_bundle(data)
            outcomes = []
            tiny = [1, 3, 7] if len(data) < 4096 else [4093, 8191]  # a 70 KB line a byte at a time is slow
            for argv, stdin, chunk in ((["-l", path], b"", saved), (["-l"], data, rng.choice(tiny)),
                                       (["-l", path], b"", rng.choice(tiny))):
                splitfile.CHUNK_SIZE = chunk  # type: ignore[misc]
                result = run(argv, stdin=stdin)
                outcomes.append((result.code, result.out, result.err.replace("<stdin>", path)))
            with self.subTest(seed=SEED, case=case, data=data):
                self.assertNotIn("Traceback", outcomes[0][2])
                self.assertIn(outcomes[0][0], (0, 1))
                self.assertEqual(outcomes[1], outcomes[0])
                self.assertEqual(outcomes[2], outcomes[0])


if __name__ == "__main__":
    unittest.main()
