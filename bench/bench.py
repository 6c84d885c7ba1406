#!/usr/bin/env python3
"""Benchmark splitfile against its peers, interleaved, as ratios within each round.

    python bench/bench.py                  # full run: 512 MiB bundles, 20,000 small files
    python bench/bench.py --quick          # smaller data, fewer rounds: a smoke test
    python bench/bench.py --txtar ~/go/bin/txtar-x

Machines are noisy, so every figure that is compared is a ratio of two runs
made one right after the other in the same round, and the report gives the
median over rounds. Peak memory is the child's ru_maxrss from os.wait4.
System calls are counted with `strace -f -c` when strace is on PATH.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPLITFILE = os.path.join(os.path.dirname(HERE), "splitfile.py")
MIB = 1 << 20


def write_large(path: str, size: int, files: int = 8) -> None:
    """A bundle of FILES bodies of source-like lines, SIZE bytes in all."""
    line = b"    def method_%d(self, value):  # a typical line of source code\n"
    block = b"".join(line % i for i in range(1000))
    with open(path, "wb") as f:
        for i in range(files):
            name = f"src/module_{i}.py".encode()
            f.write(b"<<<FILE " + name + b">>>\n")
            written = 0
            while written < size // files:
                f.write(block)
                written += len(block)
            f.write(b"<<<END " + name + b">>>\n")


def write_small(path: str, count: int, size: int = 1024, folders: int = 20) -> None:
    """A bundle of COUNT files of SIZE bytes spread over FOLDERS folders."""
    body = (b"x" * 63 + b"\n") * (size // 64)
    with open(path, "wb") as f:
        for i in range(count):
            name = f"pkg{i % folders}/file{i}.txt".encode()
            f.write(b"<<<FILE " + name + b">>>\n" + body + b"<<<END " + name + b">>>\n")


def write_long_line(path: str, size: int, inside: bool) -> None:
    """One line of SIZE bytes without a newline: a body line, or prose outside any block."""
    chunk = b"y" * MIB
    with open(path, "wb") as f:
        if inside:
            f.write(b"<<<FILE long.txt>>>\n")
        for _ in range(size // MIB):
            f.write(chunk)
        f.write(b"\n")
        if inside:
            f.write(b"<<<END long.txt>>>\n")
        else:
            f.write(b"<<<FILE after.txt>>>\nok\n<<<END after.txt>>>\n")


def run(argv: list[str], stdin_from: list[str] | None = None, cwd: str | None = None,
        env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ARGV (its stdin piped from STDIN_FROM's stdout, if given); return seconds and peak RSS in KiB."""
    start = time.perf_counter()
    feeder = None
    stdin = subprocess.DEVNULL
    if stdin_from:
        feeder = subprocess.Popen(stdin_from, stdout=subprocess.PIPE)
        stdin = feeder.stdout  # type: ignore[assignment]
    proc = subprocess.Popen(argv, stdin=stdin, cwd=cwd, env=env)
    if feeder:
        assert feeder.stdout is not None
        feeder.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if feeder:
        feeder.wait()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed with {proc.returncode}")
    return elapsed, usage.ru_maxrss


def fresh(path: str, make: bool = False) -> str:
    """Remove PATH (untimed, before a run); make it again as an empty folder if MAKE."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        os.remove(path)
    if make:
        os.makedirs(path)
    return path


def interleave(rounds: int, contenders: dict[str, callable]) -> dict[str, list[float]]:  # type: ignore[valid-type]
    """Run each contender once per round, starting each round with the next one; return their times.

    Before each run the page cache is flushed (untimed), so that no run pays
    for the writeback of the one before it.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            os.sync()
            times[name].append(contenders[name]())
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of A's time over B's time in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def syscalls(argv: list[str], work: str) -> int | None:
    """Count the system calls ARGV makes, children included, or None without strace."""
    if not shutil.which("strace"):
        return None
    out = os.path.join(work, "strace.txt")
    subprocess.run(["strace", "-f", "-c", "-o", out, *argv], check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            fields = line.split()
            if fields and fields[-1] == "total":
                return int(fields[3]) if len(fields) >= 5 else int(fields[2])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 MiB bundles, 2,000 small files, 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per comparison (default 7, or 3 with --quick)")
    parser.add_argument("--txtar", default=shutil.which("txtar-x"), help="path of Go's txtar-x, if any")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--only", default="large,pipe,memory,small,startup,diff,names",
                        help="comma-separated sections to run (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    size = 64 * MIB if args.quick else 512 * MIB
    count = 2000 if args.quick else 20000
    rounds = args.rounds or (3 if args.quick else 7)
    work = args.work or tempfile.mkdtemp(prefix="splitfile-bench-")
    os.makedirs(work, exist_ok=True)
    py = sys.executable
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, work in {work}")

    large = os.path.join(work, "large.txt")
    small = os.path.join(work, "small.txt")
    tiny = os.path.join(work, "tiny.txt")
    write_large(large, size)
    write_small(small, count)
    write_small(tiny, 10, size=2048, folders=2)
    out = os.path.join(work, "out")
    copy = os.path.join(work, "copy.txt")
    # The same files as a tar archive, made from splitfile's own output.
    run([py, SPLITFILE, large, "-o", fresh(out)])
    tar_path = os.path.join(work, "large.tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(os.path.join(out, "src"), arcname="src")

    if "large" in only:
        large_section(py, large, out, copy, tar_path, size, rounds, args.txtar)
    if "pipe" in only:
        pipe_section(py, large, out, copy, rounds)
    if "memory" in only:
        memory_section(py, large, out, work, size)
    if "small" in only:
        small_section(py, small, out, work, count, rounds)
    if "startup" in only:
        startup_section(py, tiny, out, rounds)
    if "diff" in only:
        diff_section(py, work, rounds)
    if "names" in only:
        names_section(py, out, work, 100_000 if args.quick else 1_000_000)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def large_section(py: str, large: str, out: str, copy: str, tar_path: str, size: int, rounds: int,
                  txtar: str | None) -> None:
    print(f"\n## Large bundle: {size // MIB} MiB, 8 files ({rounds} rounds, interleaved)")
    contenders = {
        "splitfile": lambda: run([py, SPLITFILE, large, "-o", fresh(out)])[0],
        "cp": lambda: run(["cp", large, fresh(copy)])[0],
        "tar -x": lambda: run(["tar", "-xf", tar_path, "-C", fresh(out, make=True)])[0],
    }
    if txtar:
        contenders["txtar-x"] = lambda: run([txtar, large], cwd=fresh(out, make=True))[0]
    times = interleave(rounds, contenders)
    for name, values in times.items():
        print(f"  {name:10s} median {statistics.median(values):.3f} s")
    print(f"  splitfile / cp     = {ratio(times, 'splitfile', 'cp'):.2f}x   (target <= 2.5)")
    print(f"  splitfile / tar -x = {ratio(times, 'splitfile', 'tar -x'):.2f}x")
    if txtar:
        print(f"  splitfile / txtar-x = {ratio(times, 'splitfile', 'txtar-x'):.2f}x   (target <= 1.0)")
    else:
        print("  txtar-x: not on PATH (give --txtar); no ratio")



def pipe_section(py: str, large: str, out: str, copy: str, rounds: int) -> None:
    print(f"\n## Large bundle from a pipe ({rounds} rounds)")
    times = interleave(rounds, {
        "splitfile": lambda: run([py, SPLITFILE, "-o", fresh(out)], stdin_from=["cat", large])[0],
        "cat | cat": lambda: run(["sh", "-c", f"cat > {fresh(copy)}"], stdin_from=["cat", large])[0],
    })
    for name, values in times.items():
        print(f"  {name:10s} median {statistics.median(values):.3f} s")
    print(f"  splitfile / cat|cat = {ratio(times, 'splitfile', 'cat | cat'):.2f}x   (target <= 2.5)")



def memory_section(py: str, large: str, out: str, work: str, size: int) -> None:
    print("\n## Peak memory (RSS, from os.wait4)   (target <= 32 MiB each)")
    long_body = os.path.join(work, "long-body.txt")
    long_prose = os.path.join(work, "long-prose.txt")
    write_long_line(long_body, size // 2, inside=True)
    write_long_line(long_prose, size // 2, inside=False)
    cases = [
        (f"{size // MIB} MiB bundle from a file", [py, SPLITFILE, large, "-o", out], None),
        (f"{size // MIB} MiB bundle from a pipe", [py, SPLITFILE, "-o", out], ["cat", large]),
        (f"{size // 2 // MIB} MiB body line, no newline", [py, SPLITFILE, long_body, "-o", out], None),
        (f"{size // 2 // MIB} MiB prose line outside", [py, SPLITFILE, long_prose, "-o", out], None),
        ("bare interpreter (python -c pass)", [py, "-c", "pass"], None),
    ]
    for title, argv, feed in cases:
        fresh(out)
        _, rss = run(argv, stdin_from=feed)
        print(f"  {title:36s} {rss / 1024:6.1f} MiB")
    os.remove(long_body)
    os.remove(long_prose)



def small_section(py: str, small: str, out: str, work: str, count: int, rounds: int) -> None:
    print(f"\n## Many small files: {count} files of 1 KiB")
    small_tar = _tar_of(py, small, out, work)
    times = interleave(rounds, {
        "splitfile": lambda: run([py, SPLITFILE, small, "-o", fresh(out)])[0],
        "tar -x": lambda: run(["tar", "-xf", small_tar, "-C", fresh(out, make=True)])[0],
    })
    for name, values in times.items():
        print(f"  {name:10s} median {statistics.median(values):.3f} s")
    print(f"  splitfile / tar -x = {ratio(times, 'splitfile', 'tar -x'):.2f}x")
    calls = syscalls([py, SPLITFILE, small, "-o", fresh(out)], work)
    base = syscalls([py, "-c", "pass"], work)
    tar_calls = syscalls(["tar", "-xf", small_tar, "-C", fresh(out, make=True)], work)
    if calls is not None and base is not None and tar_calls is not None:
        print(f"  system calls per file: splitfile {calls / count:.2f} ({(calls - base) / count:.2f} without the"
              f" interpreter's own start-up), tar -x {tar_calls / count:.2f}   (target <= 5)")
    else:
        print("  strace not found: no system-call count")



def startup_section(py: str, tiny: str, out: str, rounds: int) -> None:
    print(f"\n## Start-up: a 10-file, 20 KiB bundle ({rounds * 3} rounds)")
    # `python splitfile.py` compiles the script on every run; an imported module
    # (python -m splitfile, the installed command) loads cached bytecode.
    cached = dict(os.environ, PYTHONPATH=os.path.dirname(SPLITFILE))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([py, "-c", "import splitfile"], env=cached, check=True)
    times = interleave(rounds * 3, {
        "python splitfile.py": lambda: run([py, SPLITFILE, tiny, "-o", fresh(out)])[0],
        "python -m splitfile": lambda: run([py, "-m", "splitfile", tiny, "-o", fresh(out)], env=cached)[0],
        "python -c pass": lambda: run([py, "-c", "pass"])[0],
    })
    for name, values in times.items():
        print(f"  {name:20s} median {statistics.median(values) * 1000:.1f} ms")
    for name in ("python splitfile.py", "python -m splitfile"):
        print(f"  {name} / bare start = {ratio(times, name, 'python -c pass'):.2f}x   (target <= 1.3)")


def diff_section(py: str, work: str, rounds: int) -> None:
    """--diff of a 2 MB file with every other line changed, beside GNU diff -u of the same two files."""
    print(f"\n## --diff: a 2 MB file with every other line changed ({rounds} rounds)")
    folder = os.path.join(work, "diff-target")
    os.makedirs(folder, exist_ok=True)
    old = os.path.join(folder, "module.py")
    new = os.path.join(work, "module-new.py")
    bundle = os.path.join(work, "diff-bundle.txt")
    line = b"    result_%d = compute(value, %d)  # a typical line of source code\n"
    # Written line by line, never held: a child's peak RSS counts what the
    # benchmark itself holds when it forks.
    lines = size = 0
    with open(old, "wb") as a, open(new, "wb") as b, open(bundle, "wb") as c:
        c.write(b"<<<FILE module.py>>>\n")
        while size < 2_000_000:
            text = line % (lines, lines)
            changed = text.replace(b"compute", b"evaluate") if lines % 2 else text
            a.write(text)
            b.write(changed)
            c.write(changed)
            lines += 1
            size += len(text)
        c.write(b"<<<END module.py>>>\n")
    devnull = subprocess.DEVNULL

    def timed(argv: list[str]) -> tuple[float, int]:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=devnull)
        _, _, usage = os.wait4(proc.pid, 0)
        return time.perf_counter() - start, usage.ru_maxrss

    peaks: dict[str, int] = {}

    def contender(name: str, argv: list[str]) -> float:
        seconds, peak = timed(argv)
        peaks[name] = max(peaks.get(name, 0), peak)
        return seconds

    times = interleave(rounds, {
        "splitfile --diff": lambda: contender("splitfile --diff", [py, SPLITFILE, bundle, "--diff", "-o", folder]),
        "diff -u": lambda: contender("diff -u", ["diff", "-u", old, new]),
    })
    print(f"  {lines} lines, {size} bytes")
    for name, values in times.items():
        print(f"  {name:18s} median {statistics.median(values):.3f} s, peak {peaks[name] / 1024:.1f} MiB")
    print(f"  splitfile --diff / diff -u = {ratio(times, 'splitfile --diff', 'diff -u'):.1f}x")
    for path in (old, new, bundle):
        os.remove(path)


def names_section(py: str, out: str, work: str, count: int) -> None:
    """Peak memory per file (COUNT one-line blocks) and for deep names, beside the bare interpreter."""
    print(f"\n## Per-file memory: {count:,} one-line blocks; deep names"
          "   (target <= 200 bytes a file; tens of MiB for deep names)")
    many = os.path.join(work, "many.txt")
    with open(many, "wb") as f:
        for i in range(count):
            name = f"d{i % 1000}/f{i}.txt".encode()
            f.write(b"<<<FILE " + name + b">>>\nx\n<<<END " + name + b">>>\n")
    deep = os.path.join(work, "deep.txt")
    with open(deep, "wb") as f:
        for i in range(40):  # about 2 KB each: valid names (SPEC 2), 1,000 parts deep
            name = (f"n{i}/" + "d/" * 998 + "f.txt").encode()
            f.write(b"<<<FILE " + name + b">>>\nx\n<<<END " + name + b">>>\n")
    distinct = os.path.join(work, "distinct.txt")
    with open(distinct, "wb") as f:
        for i in range(1000):  # 2,040,000 folders, none shared below the top: an 8 MB bundle
            name = (f"n{i}/" + "a/" * 2039 + "f").encode()
            f.write(b"<<<FILE " + name + b">>>\nx\n<<<END " + name + b">>>\n")
    quiet = ["sh", "-c", 'exec "$0" "$@" >/dev/null']  # exec: the peak measured is splitfile's own
    _, bare = run([py, "-c", "pass"])
    print(f"  {'bare interpreter (python -c pass)':36s} {bare / 1024:6.1f} MiB")
    cases = [
        ("-l", [py, SPLITFILE, many, "-l"], count),
        ("-n", [py, SPLITFILE, many, "-n", "-o", out], count),
        ("real run", [py, SPLITFILE, many, "-o", out], count),
        ("--diff, every file new", [py, SPLITFILE, many, "--diff", "-o", out], count),
        ("40 names 1,000 parts deep, -l", [py, SPLITFILE, deep, "-l"], 0),
        ("1,000 names 2,040 parts deep, -l", [py, SPLITFILE, distinct, "-l"], 0),
    ]
    for title, argv, files in cases:
        fresh(out)
        _, rss = run(quiet + argv)
        per = f"   {(rss - bare) * 1024 / files:5.0f} bytes a file above the interpreter" if files else ""
        print(f"  {title:36s} {rss / 1024:6.1f} MiB{per}")
    fresh(out)
    os.remove(many)
    os.remove(deep)
    os.remove(distinct)


def _tar_of(py: str, bundle: str, out: str, work: str) -> str:
    """Return a tar archive of the files BUNDLE holds."""
    run([py, SPLITFILE, bundle, "-o", fresh(out)])
    path = os.path.join(work, os.path.basename(bundle) + ".tar")
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(out)):
            tar.add(os.path.join(out, name), arcname=name)
    return path


if __name__ == "__main__":
    main()
