"""``dnssec-sidecar verify-log FILE... [--hmac-key-file F] [--head SEQ:HASH] [--collected]``
(issues #4, #18): check the hash chain of forensic log files given oldest first (``log.3 log.2
log.1 log``, plain or gzip-compressed, a crashed writer's unfinished stream included) and name
the first record that was changed, removed or reordered.

Each line must be a record in canonical form whose ``hash`` recomputes (HMAC-SHA-256 under the
key for ``mac: hmac-sha256``; such a log cannot be checked without the key), whose ``prev`` is
the hash of the record before it and whose ``seq`` is one more, across files. A first record with
``seq`` 0 must have the genesis ``prev``; a later first record's ``prev`` is taken as given (the
files before it were not given or were rotated away). The record format is in README (byte by
byte, as other tools can check it), ``resolver.forensic.record`` (the fields) and
``resolver.forensic.seal`` (the encoding and the chain).

Records removed from the end of a log leave no gap: ``--head SEQ:HASH``, a chain head the
resolver emitted elsewhere (``log.checkpoint``: the process log, ``/log/head``), says how many
are missing after the last one found, or that the record at SEQ is not the one emitted.
``--collected`` reads lines as a log collector delivered them (``resolver.forensic.collected``):
the record found in each line, checked on its canonical encoding; lines with no record, and a
record delivered twice in a row, are skipped and counted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from resolver import status
from resolver.forensic._fastlog import GENESIS
from resolver.forensic.collected import recover
from resolver.forensic.files import Lines
from resolver.forensic.seal import (NEEDS_KEY, ForensicLogError, UnreadableKey, check_line,
                                    check_record, hasher, load_hmac_key)

__all__ = ["Problem", "Report", "main", "parse_head", "run", "verify"]


@dataclass(frozen=True)
class Problem:
    """Where the chain breaks first: file, 1-based line, the record's seq (None if unreadable)."""

    file: str
    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        seq = f"seq {self.seq}" if self.seq is not None else "seq ?"
        return f"{self.file}:{self.line} ({seq}): {self.message}"


@dataclass
class Report:
    """The outcome of :func:`verify`: ``ok``, or the first ``problem``; ``needs_key`` when the
    log is HMAC-protected and no key was given (nothing could be checked past that point)."""

    files: list[str]
    ok: bool = True
    records: int = 0          # records that verified
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    mac: str | None = None
    problem: Problem | None = None
    needs_key: bool = False
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.needs_key:
            head = f"CANNOT CHECK: {self.problem}; give --hmac-key-file"
        elif not self.ok:
            head = (f"TAMPERED: {self.problem}\n"
                    f"({self.records} records before it verify)")
        elif self.records == 0:
            head = "OK: no records"
        else:
            head = (f"OK: {self.records} records, seq {self.first_seq} to {self.last_seq}, "
                    f"{len(self.files)} file(s), chain verified ({self.mac}); last hash "
                    f"{self.last_hash}")
        return "\n".join([head, *(f"note: {n}" for n in self.notes)])


def _seqs(rest: Iterable[bytes], path: str, first_line: int, more: list[str],
          ) -> Iterator[tuple[str, int, int]]:
    """(file, line, seq) of the readable records after the failing one, for the diagnosis."""
    for n, line in enumerate(rest, first_line):
        seq = _seq_of(line)
        if seq is not None:
            yield path, n, seq
    for other in more:
        try:
            for n, line in enumerate(Lines(other), 1):
                seq = _seq_of(line)
                if seq is not None:
                    yield other, n, seq
        except ValueError:  # compressed data corrupt: what came before it was looked at
            pass


def _seq_of(line: bytes) -> int | None:
    rec = recover(line)
    seq = rec.get("seq") if isinstance(rec, dict) else None
    return seq if type(seq) is int else None


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (a checkpoint: the chain head's seq and hex hash) as a pair; ValueError."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"{text!r}: expected SEQ:HASH, the seq and the 64 hex digits of a "
                         f"chain head (log.checkpoint)")
    return int(seq), digest


def _seq_problem(expected: int, seq: int, at_file_start: bool, before: str,
                 later: Iterator[tuple[str, int, int]]) -> str:
    """What a wrong seq means: records removed (none of the missing ones come later), moved
    (one does), or repeated."""
    last = expected - 1
    boundary = f" (a whole file missing before this one, after {before}?)" if at_file_start else ""
    if seq > expected:
        for file, line, other in later:
            if other == expected:
                return (f"seq jumps from {last} to {seq}: record {expected} comes later, at "
                        f"{file}:{line}: records reordered")
        gone = f"record {expected}" if seq == expected + 1 else f"records {expected} to {seq - 1}"
        return f"seq jumps from {last} to {seq}: {gone} removed{boundary}"
    hint = (" (files given out of order? give them oldest first, e.g. log.2 log.1 log)"
            if at_file_start else "")
    if seq == last:
        return f"seq {seq} again: record repeated{hint}"
    return f"seq goes back from {last} to {seq}: records reordered or repeated{hint}"


def verify(paths: list[str], *, hmac_key: bytes | None = None,
           heads: Iterable[tuple[int, str]] = (), collected: bool = False) -> Report:
    """Check the chain through ``paths`` (oldest first), and that it reaches each of
    ``heads`` (seq, hash); ``collected``: lines as a collector delivered them. Raises OSError
    for unreadable files."""
    report = Report(files=list(paths))
    digest_of = hasher(hmac_key)
    wanted = dict(heads)
    expected: int | None = None
    prev_hash = ""
    prev_at = ""
    skipped = repeated = 0

    def fail(path: str, lineno: int, seq: int | None, message: str) -> Report:
        report.ok = False
        report.problem = Problem(path, lineno, seq, message)
        return report

    for index, path in enumerate(paths):
        lines = Lines(path)
        reader = iter(enumerate(lines, 1))
        lineno = 0
        while True:
            try:
                lineno, line = next(reader)
            except StopIteration:
                break
            except ValueError as exc:  # a compressed file's data does not decompress
                return fail(path, lineno + 1, None, f"{exc}: the file was changed or cut")
            if collected:
                rec = recover(line)
                if rec is None:
                    skipped += 1
                    continue
                if rec.get("hash") == prev_hash and rec.get("seq") == (expected or 0) - 1:
                    repeated += 1  # delivered again (collectors deliver at least once)
                    continue
                rec, problem = check_record(rec, hmac_key, digest_of)
            else:
                rec, problem = check_line(line, hmac_key, digest_of)
            seq = rec.get("seq") if isinstance(rec, dict) else None
            seq = seq if type(seq) is int else None
            if problem == NEEDS_KEY:
                report.needs_key = True
                return fail(path, lineno, seq, problem)
            if problem is not None:
                return fail(path, lineno, seq, problem)
            assert rec is not None and seq is not None
            if expected is None:
                if seq == 0 and rec["prev"] != GENESIS:
                    return fail(path, lineno, seq, "seq 0 but prev is not the genesis value: "
                                "the start of the chain was forged")
                if seq > 0:
                    report.notes.append(
                        f"the chain starts at seq {seq} ({path}:{lineno}): the files before it "
                        f"were not given or were rotated away; its prev is taken as given")
                report.first_seq = seq
                report.mac = rec["mac"]
            else:
                if seq != expected:
                    later = _seqs((line for _, line in reader), path, lineno + 1,
                                  list(paths[index + 1:]))
                    return fail(path, lineno, seq, _seq_problem(
                        expected, seq, lineno == 1, paths[index - 1] if index else "", later))
                if rec["prev"] != prev_hash:
                    return fail(path, lineno, seq, (
                        f"prev does not match the hash of the record before it ({prev_at}): "
                        f"a record before it was removed or reordered, or that record was "
                        f"changed and re-hashed"))
            if wanted.get(seq, rec["hash"]) != rec["hash"]:
                return fail(path, lineno, seq, (
                    f"not the record of the checkpoint (--head {seq}:{wanted[seq]}): the log "
                    f"was rewritten from here, or the checkpoint is of another log"))
            expected, prev_hash = seq + 1, rec["hash"]
            prev_at = f"{path}:{lineno}, seq {seq}"
            report.records += 1
            report.last_seq, report.last_hash = seq, prev_hash
        if not lines.finished:
            report.notes.append(f"{path}: its compressed stream was not closed (the writer "
                                f"stopped without closing it): read up to its last flush")
    if skipped:
        report.notes.append(f"{skipped} line(s) with no forensic record skipped (--collected)")
    if repeated:
        report.notes.append(f"{repeated} record(s) delivered twice in a row skipped "
                            f"(--collected)")
    return _check_heads(report, wanted, paths, lineno)


def _check_heads(report: Report, wanted: dict[int, str], paths: list[str], lineno: int,
                 ) -> Report:
    """The checkpoints past the last record found: records removed from the end."""
    last = report.last_seq if report.last_seq is not None else -1
    beyond = [seq for seq in wanted if seq > last]
    if beyond and paths:
        head = max(beyond)
        missing = head - last
        report.ok = False
        report.problem = Problem(paths[-1], lineno + 1, None, (
            f"{missing} record(s) missing after seq {last}: the checkpoint --head "
            f"{head}:{wanted[head]} says the chain reached seq {head} (records removed from "
            f"the end, or the files after the last given were not given)"))
    for seq in sorted(wanted):
        if report.first_seq is not None and seq < report.first_seq:
            report.notes.append(f"checkpoint seq {seq} is before the first record given: "
                                f"not checked")
    return report


def run(paths: list[str], hmac_key_file: str | None = None, heads: Iterable[str] = (),
        collected: bool = False) -> int:
    """Verify and print the result; the exit status (:mod:`resolver.status`) is 0 verified,
    1 tampered (or records missing after a checkpoint), 2 usage (no files, an HMAC log without
    the key, a malformed --head), 3 a key too short, 4 a file or the key unreadable."""
    if not paths:
        print("verify-log: give the log files, oldest first (e.g. log.2 log.1 log)",
              file=sys.stderr)
        return status.USAGE
    try:
        checkpoints = [parse_head(text) for text in heads]
    except ValueError as exc:
        print(f"verify-log: --head: {exc}", file=sys.stderr)
        return status.USAGE
    key = None
    if hmac_key_file is not None:
        try:
            key = load_hmac_key(hmac_key_file)
        except ForensicLogError as exc:
            print(f"verify-log: --hmac-key-file: {exc}", file=sys.stderr)
            return status.UNREADABLE if isinstance(exc, UnreadableKey) else status.INVALID
    try:
        report = verify(paths, hmac_key=key, heads=checkpoints, collected=collected)
    except OSError as exc:
        print(f"verify-log: {exc.filename}: cannot read: {exc.strerror}", file=sys.stderr)
        return status.UNREADABLE
    print(report.text())
    if report.needs_key:
        return status.USAGE
    return status.OK if report.ok else status.FOUND


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """verify-log's options, for this module's main and the dnssec-sidecar command."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="log files, oldest first (plain or gzip)")
    parser.add_argument("--hmac-key-file", help="the log's HMAC key file")
    parser.add_argument("--head", action="append", default=[], metavar="SEQ:HASH",
                        help="a chain head the resolver emitted (log.checkpoint): fail if the "
                             "log does not reach it (records removed from the end)")
    parser.add_argument("--collected", action="store_true",
                        help="lines as a log collector delivered them: prefixes, wrapper "
                             "objects, re-encoded JSON, lines with no record, repeats")


def main(argv: list[str] | None = None) -> int:
    """``python -m resolver.forensic.verify FILE... [--hmac-key-file F] [--head SEQ:HASH]
    [--collected]``."""
    parser = argparse.ArgumentParser(prog="verify-log", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.files, args.hmac_key_file, args.head, args.collected)


if __name__ == "__main__":
    sys.exit(main())
