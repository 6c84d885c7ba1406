"""The bundle format (SPEC 1): events from bytes, with no filesystem."""

from __future__ import annotations

import random
import unittest

from tests.helpers import splitfile

BundleError = splitfile.BundleError


def events(data: bytes, sizes: list[int] | None = None, reread: bool = False) -> list[tuple]:
    """Parse DATA fed in chunks of SIZES (cycled; default: whole); merge body pieces.

    With REREAD the parser may read DATA again, so it counts lines only when asked.
    """
    def read_again(start: int, end: int) -> list[bytes]:  # in small pieces, to cross line ends
        return [data[i:min(i + 5, end)] for i in range(start, end, 5)]

    parser = splitfile.Parser(read_again if reread else None)
    raw = []
    if sizes is None:
        raw += parser.feed(data)
    else:
        pos, i = 0, 0
        while pos < len(data):
            size = sizes[i % len(sizes)]
            raw += parser.feed(data[pos:pos + size])
            pos += size
            i += 1
    raw += parser.finish()
    parser.close()
    out: list[tuple] = []
    for ev in raw:
        if isinstance(ev, splitfile.Body):  # data is a view into the chunk: copy it
            if out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + bytes(ev.data))
            else:
                out.append(("body", bytes(ev.data)))
        elif isinstance(ev, splitfile.Open):
            out.append(("open", ev.name, ev.line))
        elif isinstance(ev, splitfile.Close):
            out.append(("close", ev.line))
        else:
            out.append(("near", ev.line))
    return out


def error_of(data: bytes, sizes: list[int] | None = None, reread: bool = False) -> tuple[int | None, str]:
    try:
        events(data, sizes, reread)
    except BundleError as exc:
        return exc.line, exc.message
    raise AssertionError("no BundleError")


SPLITS = [None, [1], [2], [3], [7], [1, 5, 2], [4096]]

# bundle -> expected events (the same whatever the chunking)
VALID = [
    ("simple", b"<<<FILE a>>>\nhi\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"hi\n"), ("close", 3)]),
    ("prose around is ignored", b"Sure!\n```\n<<<FILE a>>>\nx\n<<<END a>>>\n```\nbye",
     [("open", "a", 3), ("body", b"x\n"), ("close", 5)]),
    ("empty body", b"<<<FILE a>>>\n<<<END a>>>\n", [("open", "a", 1), ("close", 2)]),
    ("close at end of input without LF", b"<<<FILE a>>>\nx\n<<<END a>>>",
     [("open", "a", 1), ("body", b"x\n"), ("close", 3)]),
    ("CRLF markers, CRLF body kept", b"<<<FILE a>>>\r\nx\r\ny\r\n<<<END a>>>\r\n",
     [("open", "a", 1), ("body", b"x\r\ny\r\n"), ("close", 4)]),
    ("close with CR at end of input", b"<<<FILE a>>>\nx\n<<<END a>>>\r",
     [("open", "a", 1), ("body", b"x\n"), ("close", 3)]),
    ("only one CR is removed", b"<<<FILE a>>>\nx\n<<<END a>>>\r\r\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"x\n<<<END a>>>\r\r\n"), ("close", 4)]),
    ("a lone CR does not end a line", b"<<<FILE a>>>\nx\r<<<END a>>>\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"x\r<<<END a>>>\n"), ("close", 3)]),
    ("other markers inside are content",
     b"<<<FILE a>>>\n<<<FILE b>>>\n<<<END b>>>\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"<<<FILE b>>>\n<<<END b>>>\n"), ("close", 4)]),
    ("the same FILE line inside is content", b"<<<FILE a>>>\n<<<FILE a>>>\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"<<<FILE a>>>\n"), ("close", 3)]),
    ("close match is case-sensitive", b"<<<FILE a>>>\n<<<end a>>>\n<<<END A>>>\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"<<<end a>>>\n<<<END A>>>\n"), ("close", 4)]),
    ("close with spaces is content", b"<<<FILE a>>>\n <<<END a>>>\n<<<END a>>> \n<<<END a>>>\n",
     [("open", "a", 1), ("body", b" <<<END a>>>\n<<<END a>>> \n"), ("close", 4)]),
    ("close marker must start the line", b"<<<FILE a>>>\nx<<<END a>>>\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"x<<<END a>>>\n"), ("close", 3)]),
    ("UTF-8 BOM is ignored", b"\xef\xbb\xbf<<<FILE a>>>\nx\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"x\n"), ("close", 3)]),
    ("BOM inside a body is kept", b"<<<FILE a>>>\n\xef\xbb\xbfx\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"\xef\xbb\xbfx\n"), ("close", 3)]),
    ("name keeps inner spaces and text", b"<<<FILE  a b >>>\n<<<END  a b >>>\n",
     [("open", " a b ", 1), ("close", 2)]),
    ("name with '>>>' inside", b"<<<FILE a>>>b>>>\n<<<END a>>>b>>>\n",
     [("open", "a>>>b", 1), ("close", 2)]),
    ("empty name is reported as a name", b"<<<FILE >>>\n<<<END >>>\n",
     [("open", "", 1), ("close", 2)]),
    ("invalid UTF-8 name survives for the name check", b"<<<FILE \xff>>>\n<<<END \xff>>>\n",
     [("open", "\udcff", 1), ("close", 2)]),
    ("two blocks and line numbers", b"x\n<<<FILE a>>>\n1\n2\n<<<END a>>>\n\n<<<FILE b>>>\n3\n<<<END b>>>\n",
     [("open", "a", 2), ("body", b"1\n2\n"), ("close", 5), ("open", "b", 7), ("body", b"3\n"), ("close", 9)]),
    ("a bundle inside a bundle",
     b"<<<FILE inner.txt>>>\n<<<FILE x>>>\ny\n<<<END x>>>\n<<<END inner.txt>>>\n",
     [("open", "inner.txt", 1), ("body", b"<<<FILE x>>>\ny\n<<<END x>>>\n"), ("close", 5)]),
    ("near miss warns and goes on", b" <<<FILE a>>>\n<<<FILE a>>>\n<<<END a>>>\n",
     [("near", 1), ("open", "a", 2), ("close", 3)]),
    ("NUL and binary bytes in a body pass through", b"<<<FILE a>>>\n\x00\xff\xfe\n<<<END a>>>\n",
     [("open", "a", 1), ("body", b"\x00\xff\xfe\n"), ("close", 3)]),
]


class ParserTableTest(unittest.TestCase):
    def test_valid_bundles_give_the_same_events_whatever_the_chunking(self) -> None:
        for title, data, expected in VALID:
            for sizes in SPLITS:
                for reread in (False, True):
                    with self.subTest(title, sizes=sizes, reread=reread):
                        self.assertEqual(events(data, sizes, reread), expected)


NEAR_MISSES = [
    b" <<<FILE a>>>", b"<<<FILE a>>> ", b"\t<<<END a>>>", b"<<<END a>>>  ", b"<<FILE a>>>",
    b"<<<<FILE a>>>", b"<<<file a>>>", b"<<<FILEa>>>", b"<<<FILE a>>", b"<<<END a>>",
    b"<< FILE a >>", b"<<<ENDa>>>", b"<<<End a>>>", b"**<<<FILE a>>>**", b"`<<<FILE a>>>`",
    b"> <<<FILE a>>>", b"    <<<FILE a>>>", b"- <<<END a>>>", b"<<<FILE a>>>\r\r",
]
NOT_NEAR_MISSES = [b"<< is a shift", b"x <<<FILE a>>>", b"<FILE a>", b"hello", b"<<<", b"<<<FIL a>>>", b"<<< EN a"]


class NearMissTest(unittest.TestCase):
    def test_lines_that_almost_are_markers_warn_with_their_line(self) -> None:
        for text in NEAR_MISSES:
            with self.subTest(text=text):
                data = b"prose\n" + text + b"\n<<<FILE ok>>>\n<<<END ok>>>\n"
                self.assertEqual(events(data)[0], ("near", 2))

    def test_ordinary_lines_do_not_warn(self) -> None:
        for text in NOT_NEAR_MISSES:
            with self.subTest(text=text):
                data = text + b"\n<<<FILE ok>>>\n<<<END ok>>>\n"
                self.assertEqual(events(data)[0], ("open", "ok", 2))

    def test_near_misses_inside_a_block_are_content(self) -> None:
        data = b"<<<FILE a>>>\n <<<FILE b>>>\n<<<END a>>>\n"
        self.assertEqual(events(data), [("open", "a", 1), ("body", b" <<<FILE b>>>\n"), ("close", 3)])


class StructureErrorTest(unittest.TestCase):
    def test_errors_name_their_line_and_what_to_do(self) -> None:
        table = [
            ("unclosed", b"<<<FILE a>>>\nx\n", 1, ["'a' is never closed", "'<<<END a>>>'"]),
            ("unclosed, later FILE line is the likely cause",
             b"prose\n<<<FILE a>>>\nx\n<<<FILE b>>>\ny\n<<<END b>>>\n", 2,
             ["never closed", "line 4 starts another block"]),
            ("unclosed, case-different close is the likely cause",
             b"<<<FILE a>>>\nx\n  <<<end A>>> \n", 1,
             ["line 3 '  <<<end A>>> ' was probably meant to close it, but it has a trailing blank, which is invisible",
              "it has 'end' where a marker has 'END': case matters", "the name differs in case; write '<<<END a>>>'"]),
            ("close outside a block", b"x\n<<<END a>>>\n", 2, ["closes no open block"]),
            ("close of another name after a block", b"<<<FILE a>>>\n<<<END a>>>\n<<<END b>>>\n", 3,
             ["'<<<END b>>>' closes no open block"]),
            ("no block at all", b"Sorry, I cannot help with that.\n", None, ["no '<<<FILE name>>>' block"]),
            ("empty input", b"", None, ["no '<<<FILE name>>>' block"]),
            ("only a near miss", b"<<<file a>>>\n", None, ["no '<<<FILE name>>>' block"]),
            ("UTF-16 LE", "<<<FILE a>>>\n".encode("utf-16"), 1, ["UTF-16", "convert it to UTF-8", "PowerShell"]),
            ("UTF-16 BE", b"\xfe\xff\x00<", 1, ["UTF-16"]),
            ("UTF-32 LE", b"\xff\xfe\x00\x00<\x00\x00\x00", 1, ["UTF-32", "iconv"]),
            ("UTF-32 BE", b"\x00\x00\xfe\xff", 1, ["UTF-32"]),
            ("UTF-16, too short for UTF-32", b"\xff\xfe", 1, ["UTF-16"]),
        ]
        for title, data, line, words in table:
            for sizes, reread in ((None, False), ([1], False), ([3], False), (None, True), ([3], True)):
                with self.subTest(title, sizes=sizes, reread=reread):
                    got_line, message = error_of(data, sizes, reread)
                    self.assertEqual(got_line, line)
                    for word in words:
                        self.assertIn(word, message)

    def test_the_hint_is_found_after_a_line_too_long_to_hold(self) -> None:
        data = b"<<<FILE a>>>\n" + b"x" * 100_000 + b" <<<end a>>>\n  <<<end a>>>\n"
        for reread in (None, lambda start, end: [data[i:min(i + 4096, end)] for i in range(start, end, 4096)]):
            with self.subTest(reread=reread is not None):
                parser = splitfile.Parser(reread)
                with self.assertRaises(BundleError) as caught:
                    for i in range(0, len(data), 4096):
                        parser.feed(data[i:i + 4096])
                    parser.finish()
                    parser.close()
                self.assertEqual(caught.exception.line, 1)
                self.assertIn("line 3 '  <<<end a>>>' was probably meant to close it", caught.exception.message)

    def test_likely_closes_are_counted_up_to_a_bound(self) -> None:
        for count, words in ((3, "the block holds 2 more lines that may be meant to end it"), (150, "at least 100 more lines that may be meant to end it")):
            data = b"<<<FILE a>>>\n" + b"x\n<<<END>>>\n" * count
            for sizes, reread in ((None, False), ([5], False), (None, True), ([5], True)):
                with self.subTest(count=count, sizes=sizes, reread=reread):
                    line, message = error_of(data, sizes, reread)
                    self.assertEqual(line, 1)
                    self.assertIn("line 3 '<<<END>>>' does not name the file; write '<<<END a>>>'", message)
                    self.assertIn(words, message)

    def test_events_before_a_structure_error_come_first(self) -> None:
        data = b" <<<FILE a>>>\n<<<FILE ../b>>>\nx"
        for reread in (None, lambda start, end: [data[start:end]]):
            with self.subTest(reread=reread is not None):
                parser = splitfile.Parser(reread)
                got = parser.feed(data) + parser.finish()
                self.assertEqual([type(e).__name__ for e in got], ["NearMiss", "Open", "Body"])
                self.assertEqual([e.line for e in got if not isinstance(e, splitfile.Body)], [1, 2])
                with self.assertRaises(BundleError) as caught:
                    parser.close()
                self.assertEqual(caught.exception.line, 2)
                parser.close()  # raised once

    def test_near_misses_held_back_stay_in_line_order_and_bounded(self) -> None:
        data = b"".join(b"<<<FILE f%d>>> \n" % i for i in range(3000)) + b"<<<FILE ok>>>\n<<<END ok>>>\n"
        for sizes in (None, [7]):
            with self.subTest(sizes=sizes):
                got = events(data, sizes)
                self.assertEqual(got[:3000], [("near", i) for i in range(1, 3001)])
                self.assertEqual(got[3000:], [("open", "ok", 3001), ("close", 3002)])

    def test_first_error_ends_the_parse(self) -> None:
        parser = splitfile.Parser()
        with self.assertRaises(BundleError) as caught:
            parser.feed(b"<<<END x>>>\n<<<END y>>>\n")
        self.assertEqual(caught.exception.line, 1)


class ChunkBoundaryTest(unittest.TestCase):
    """Markers, CRLF and edges split across reads, as with a tiny buffer."""

    def test_marker_split_across_every_position(self) -> None:
        data = b"<<<FILE dir/name.txt>>>\r\nbody line\r\n<<<END dir/name.txt>>>\r\n"
        expected = events(data)
        for cut in range(1, len(data)):
            with self.subTest(cut=cut):
                parser = splitfile.Parser()
                got = parser.feed(data[:cut]) + parser.feed(data[cut:]) + parser.finish()
                body = b"".join(e.data for e in got if isinstance(e, splitfile.Body))
                self.assertEqual(body, b"body line\r\n")
                self.assertEqual([type(e).__name__ for e in got if not isinstance(e, splitfile.Body)],
                                 ["Open", "Close"])
                self.assertEqual(events(data, [cut]), expected)

    def test_close_longer_than_the_buffer(self) -> None:
        name = "n" * 300
        data = ("<<<FILE %s>>>\nx\n<<<END %s>>>\n" % (name, name)).encode()
        self.assertEqual(events(data, [16]), [("open", name, 1), ("body", b"x\n"), ("close", 3)])

    def test_body_ending_exactly_at_a_buffer_edge(self) -> None:
        head = b"<<<FILE a>>>\n"
        body = b"0123456789\n" * 3
        data = head + body + b"<<<END a>>>\n"
        for size in (len(head), len(head) + len(body), 11):
            with self.subTest(size=size):
                self.assertEqual(events(data, [size]), [("open", "a", 1), ("body", body), ("close", 5)])

    def test_near_miss_end_just_before_the_real_one(self) -> None:
        data = b"<<<FILE a>>>\nx\n<<<END a>>> \n<<<END a>>\n<<<END a>>>\n"
        for sizes in SPLITS:
            for reread in (False, True):
                with self.subTest(sizes=sizes, reread=reread):
                    self.assertEqual(events(data, sizes, reread),
                                     [("open", "a", 1), ("body", b"x\n<<<END a>>> \n<<<END a>>\n"), ("close", 5)])

    def test_random_chunkings_agree(self) -> None:
        rng = random.Random(1234)
        data = b"".join(
            b"prose %d\n<<<FILE f%d>>>\r\n%s<<<END f%d>>>\n" % (i, i, b"line\r\n" * i + b"<<<END x>>>\n", i)
            for i in range(20)
        )
        expected = events(data)
        for _ in range(50):
            sizes = [rng.randint(1, 40) for _ in range(10)]
            self.assertEqual(events(data, sizes), expected)
            self.assertEqual(events(data, sizes, reread=True), expected)

    def test_lines_are_not_counted_when_the_bundle_can_be_read_again(self) -> None:
        reads = []

        def reread(start: int, end: int) -> list[bytes]:
            reads.append((start, end))
            return [data[start:end]]

        data = b"x\n" * 1000 + b"<<<FILE a>>>\n" + b"y\n" * 1000 + b"<<<END a>>>\n<<<FILE b>>>\n<<<END b>>>\n"
        parser = splitfile.Parser(reread)
        got = parser.feed(data) + parser.finish()
        self.assertEqual(reads, [])  # a run that succeeds never counts
        opens = [e for e in got if isinstance(e, splitfile.Open)]
        self.assertEqual([e.line for e in opens], [1001, 2003])
        self.assertTrue(reads)


class FindMarkerTest(unittest.TestCase):
    def test_it_agrees_with_bytes_find_even_on_text_full_of_angle_brackets(self) -> None:
        rng = random.Random(7)
        for case in range(2000):
            data = bytes(rng.choice(b"<<<<ENDx >") for _ in range(rng.randint(0, 400)))
            marker = rng.choice([b"<<<", b"<<<END x>>>", b"<", b"<<<END"])
            start = rng.randint(0, len(data))
            end = rng.randint(start, len(data))
            with self.subTest(case=case):
                self.assertEqual(splitfile._find_marker(data, marker, start, end), data.find(marker, start, end))


class BoundedMemoryTest(unittest.TestCase):
    """The parser holds at most a chunk plus a short tail, whatever the input."""

    LIMIT = splitfile.MAX_HELD_LINE + 2 * (1 << 16) + 64

    def feed_all(self, parser: splitfile.Parser, pieces) -> int:
        largest = 0
        body = 0
        for piece in pieces:
            for ev in parser.feed(piece):
                if isinstance(ev, splitfile.Body):
                    body += len(ev.data)
            largest = max(largest, len(parser._buf))
        for ev in parser.finish():
            if isinstance(ev, splitfile.Body):
                body += len(ev.data)
        self.assertLess(largest, self.LIMIT)
        return body

    def test_a_long_body_line_without_newline_streams(self) -> None:
        parser = splitfile.Parser()
        chunk = b"x" * (1 << 16)
        pieces = [b"<<<FILE a>>>\n"] + [chunk] * 256 + [b"\n<<<END a>>>\n"]  # 16 MiB line
        self.assertEqual(self.feed_all(parser, pieces), 256 * len(chunk) + 1)

    def test_a_long_prose_line_outside_blocks_streams(self) -> None:
        parser = splitfile.Parser()
        chunk = b"y" * (1 << 16)
        pieces = [b"<<"] + [chunk] * 256 + [b"\n<<<FILE a>>>\nz\n<<<END a>>>\n"]
        self.assertEqual(self.feed_all(parser, pieces), 2)

    def test_a_long_close_shaped_line_outside_is_still_an_error(self) -> None:
        parser = splitfile.Parser()
        with self.assertRaises(BundleError) as caught:
            for piece in [b"ok\n<<<END "] + [b"x" * 65536] * 4 + [b">>>\n"]:
                parser.feed(piece)
            parser.finish()
            parser.close()
        self.assertEqual(caught.exception.line, 2)

    def test_a_long_file_line_is_an_error_naming_the_limit(self) -> None:
        parser = splitfile.Parser()
        with self.assertRaises(BundleError) as caught:
            for piece in [b"<<<FILE "] + [b"x" * 65536] * 4 + [b">>>\n"]:
                parser.feed(piece)
            parser.finish()
            parser.close()
        self.assertEqual(caught.exception.line, 1)
        self.assertIn("4096", caught.exception.message)

    def test_a_long_near_miss_line_still_warns(self) -> None:
        data = b"<<<file " + b"x" * 200000 + b"\n<<<FILE a>>>\n<<<END a>>>\n"
        self.assertEqual(events(data, [4096])[0], ("near", 1))


if __name__ == "__main__":
    unittest.main()
