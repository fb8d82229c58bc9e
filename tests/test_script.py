"""Tests for freepgt.ops.script: numbers, every refusal rule, a full script."""

import pickle

import pytest

from freepgt.ops.script import Op, ScriptError, load_script, parse_number, parse_script


# --- numbers ---------------------------------------------------------------

@pytest.mark.parametrize(
    "token, value",
    [
        ("0", 0),
        ("4096", 4096),
        ("010", 10),  # decimal, not octal
        ("0x0", 0),
        ("0x1000", 4096),
        ("0xABCdef", 0xABCDEF),
        ("0x1E", 30),  # 'E' here is a hex digit, not a suffix
        ("1K", 1024),
        ("4K", 4096),
        ("2M", 2 * 1024 * 1024),
        ("0x10M", 16 * 1024 * 1024),
        ("2G", 2 * 1024**3),
        ("3T", 3 * 1024**4),
        ("0x10T", 16 * 1024**4),  # 0x100000000000, the arena start
        ("0xffffffffffffffff", 2**64 - 1),
        ("18446744073709551615", 2**64 - 1),
        ("16777215T", 16777215 * 2**40),  # largest multiple of 1T below 2**64
    ],
)
def test_parse_number_accepts(token, value):
    assert parse_number(token) == value


@pytest.mark.parametrize(
    "token, message",
    [
        ("", "empty number"),
        ("-1", "negative number '-1'"),
        ("0X10", "bad number '0X10': hex prefix must be lower-case '0x'"),
        ("0x", "bad number '0x': no hex digits after '0x'"),
        ("4k", "bad number '4k': unknown suffix 'k' (use K, M, G or T)"),
        ("16E", "bad number '16E': unknown suffix 'E' (use K, M, G or T)"),
        ("0x1KB", "bad number '0x1KB': unknown suffix 'KB' (use K, M, G or T)"),
        ("1.5M", "bad number '1.5M': expected decimal or 0x hex with an optional K, M, G or T suffix"),
        ("1_000", "bad number '1_000': expected decimal or 0x hex with an optional K, M, G or T suffix"),
        ("+1", "bad number '+1': expected decimal or 0x hex with an optional K, M, G or T suffix"),
        ("K", "bad number 'K': expected decimal or 0x hex with an optional K, M, G or T suffix"),
        ("\u0664", "bad number '\u0664': expected decimal or 0x hex with an optional K, M, G or T suffix"),
        ("0x10000000000000000", "number '0x10000000000000000' does not fit in 64 bits"),
        ("18446744073709551616", "number '18446744073709551616' does not fit in 64 bits"),
        ("16777216T", "number '16777216T' does not fit in 64 bits"),
        ("0x400000000000000K", "number '0x400000000000000K' does not fit in 64 bits"),
    ],
)
def test_parse_number_refuses(token, message):
    with pytest.raises(ValueError) as info:
        parse_number(token)
    assert str(info.value) == message


# --- ScriptError -------------------------------------------------------------

def test_script_error_str_and_attributes():
    e = ScriptError("demo.ops", 3, "mmap: unknown flag 'privte'")
    assert str(e) == "demo.ops:3: mmap: unknown flag 'privte'"
    assert (e.filename, e.line, e.reason) == ("demo.ops", 3, "mmap: unknown flag 'privte'")


def test_script_error_pickles():
    e = pickle.loads(pickle.dumps(ScriptError("a.ops", 7, "fork: oops")))
    assert str(e) == "a.ops:7: fork: oops"
    assert e.line == 7


# --- a complete valid script -------------------------------------------------

FULL = """\
# every op of the format, with comments and blank lines

file data 64K            # a 64 KiB file
file a-b_c.9 0x1000
mmap 0x100000000000 2M rw- private,anon,noreserve
mmap 0x100000400000 0x10000 r-- shared data
mmap 0x100000600000 4K r-x private,fixed,populate a-b_c.9 0x1000
mmap 0 4K --- shared,anon,fixed_noreplace
munmap 0x100000000000 4K
mprotect 0x100000001000 8K r--
madvise 0x100000400000 64K dontneed
mremap 0x100000002000 4K 8K
mremap 0x100000002000 8K 16K -
mremap 0x100000002000 16K 16K maymove,fixed 0x100001000000
mremap 0x100001000000 16K 16K dontunmap,maymove 0x100002000000
	touch   0x100000001000 1   r
touch 0x100000400000 64K w#no space before the comment
fork
"""

EXPECTED = [
    Op(line=3, op="file", name="data", size=65536),
    Op(line=4, op="file", name="a-b_c.9", size=4096),
    Op(line=5, op="mmap", addr=0x100000000000, length=0x200000, prot="rw-",
       flags=frozenset({"private", "anon", "noreserve"})),
    Op(line=6, op="mmap", addr=0x100000400000, length=0x10000, prot="r--",
       flags=frozenset({"shared"}), name="data", offset=0),
    Op(line=7, op="mmap", addr=0x100000600000, length=4096, prot="r-x",
       flags=frozenset({"private", "fixed", "populate"}), name="a-b_c.9", offset=4096),
    Op(line=8, op="mmap", addr=0, length=4096, prot="---",
       flags=frozenset({"shared", "anon", "fixed_noreplace"})),
    Op(line=9, op="munmap", addr=0x100000000000, length=4096),
    Op(line=10, op="mprotect", addr=0x100000001000, length=8192, prot="r--"),
    Op(line=11, op="madvise", addr=0x100000400000, length=65536, advice="dontneed"),
    Op(line=12, op="mremap", addr=0x100000002000, length=4096, new_length=8192),
    Op(line=13, op="mremap", addr=0x100000002000, length=8192, new_length=16384),
    Op(line=14, op="mremap", addr=0x100000002000, length=16384, new_length=16384,
       flags=frozenset({"maymove", "fixed"}), new_addr=0x100001000000),
    Op(line=15, op="mremap", addr=0x100001000000, length=16384, new_length=16384,
       flags=frozenset({"dontunmap", "maymove"}), new_addr=0x100002000000),
    Op(line=16, op="touch", addr=0x100000001000, length=1, access="r"),
    Op(line=17, op="touch", addr=0x100000400000, length=65536, access="w"),
    Op(line=18, op="fork"),
]


def test_full_script():
    assert parse_script(FULL, "full.ops") == EXPECTED


def test_op_defaults_and_frozen():
    op = Op(line=1, op="fork")
    assert (op.addr, op.length, op.new_length, op.new_addr) == (0, 0, 0, None)
    assert (op.prot, op.flags, op.name, op.offset) == ("", frozenset(), None, 0)
    assert (op.size, op.advice, op.access) == (0, "", "")
    with pytest.raises(AttributeError):
        op.addr = 5  # type: ignore[misc]


def test_empty_and_comment_only_scripts():
    assert parse_script("") == []
    assert parse_script("\n  \n# nothing\n\t# still nothing\n") == []


def test_crlf_line_endings():
    ops = parse_script("file f 4K\r\nfork\r\n")
    assert ops == [Op(line=1, op="file", name="f", size=4096), Op(line=2, op="fork")]


def test_line_numbers_count_newlines_only():
    # A form feed is whitespace inside a line, not a line break.
    assert parse_script("fork\x0c\nfork") == [Op(line=1, op="fork"), Op(line=2, op="fork")]


def test_mremap_dash_flags_keeps_newaddr():
    (op,) = parse_script("mremap 0x1000 4K 8K - 0x2000")
    assert op.flags == frozenset()
    assert op.new_addr == 0x2000


def test_load_script(tmp_path):
    path = tmp_path / "demo.ops"
    path.write_text("file f 4K\nmmap 0x100000000000 4K rw- shared f\n")
    assert load_script(path) == [
        Op(line=1, op="file", name="f", size=4096),
        Op(line=2, op="mmap", addr=0x100000000000, length=4096, prot="rw-",
           flags=frozenset({"shared"}), name="f"),
    ]


def test_load_script_names_file_in_errors(tmp_path):
    path = tmp_path / "demo.ops"
    path.write_text("fork\n\nmmap 0 4K rw- privte,anon\n")
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert str(info.value).startswith(f"{path}:3: mmap: unknown flag 'privte'")
    assert info.value.filename == str(path)


def test_load_script_refuses_bad_utf8(tmp_path):
    path = tmp_path / "bad.ops"
    path.write_bytes(b"fork\n# caf\xe9\n")
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert str(info.value) == f"{path}:2: not valid UTF-8 (byte 0xe9)"


# --- refusals ------------------------------------------------------------------

def refusal(text: str) -> str:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "t.ops")
    return str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        # unknown op, case matters
        ("fork\nbrk 0x1000", "t.ops:2: unknown op 'brk'"),
        ("MMAP 0 4K rw- private,anon", "t.ops:1: unknown op 'MMAP'"),
        # wrong number of arguments, for every op
        ("file f", "t.ops:1: file: expected NAME SIZE, got 1 argument"),
        ("file f 4K 1", "t.ops:1: file: expected NAME SIZE, got 3 arguments"),
        ("mmap 0 4K rw-", "t.ops:1: mmap: expected ADDR LEN PROT FLAGS [NAME [OFFSET]], got 3 arguments"),
        ("file f 4K\nmmap 0 4K rw- shared f 0 0",
         "t.ops:2: mmap: expected ADDR LEN PROT FLAGS [NAME [OFFSET]], got 7 arguments"),
        ("munmap 0x1000", "t.ops:1: munmap: expected ADDR LEN, got 1 argument"),
        ("munmap 0x1000 4K 4K", "t.ops:1: munmap: expected ADDR LEN, got 3 arguments"),
        ("mprotect 0x1000 4K", "t.ops:1: mprotect: expected ADDR LEN PROT, got 2 arguments"),
        ("madvise 0x1000 4K", "t.ops:1: madvise: expected ADDR LEN ADVICE, got 2 arguments"),
        ("mremap 0x1000 4K", "t.ops:1: mremap: expected OLD OLDLEN NEWLEN [FLAGS [NEWADDR]], got 2 arguments"),
        ("mremap 0x1000 4K 8K fixed 0 0",
         "t.ops:1: mremap: expected OLD OLDLEN NEWLEN [FLAGS [NEWADDR]], got 6 arguments"),
        ("touch 0x1000 4K", "t.ops:1: touch: expected ADDR LEN r|w, got 2 arguments"),
        ("touch", "t.ops:1: touch: expected ADDR LEN r|w, got 0 arguments"),
        ("fork now", "t.ops:1: fork: takes no arguments, got 1 argument"),
        # bad numbers, in every numeric position
        ("file f 4k", "t.ops:1: file: bad SIZE: bad number '4k': unknown suffix 'k'"),
        ("mmap -1 4K rw- private,anon", "t.ops:1: mmap: bad ADDR: negative number '-1'"),
        ("mmap 0 0X10 rw- private,anon", "t.ops:1: mmap: bad LEN: bad number '0X10': hex prefix"),
        ("file f 4K\nmmap 0 4K rw- shared f 1.5M", "t.ops:2: mmap: bad OFFSET: bad number '1.5M'"),
        ("munmap 0x 4K", "t.ops:1: munmap: bad ADDR: bad number '0x': no hex digits"),
        ("munmap 0 16E", "t.ops:1: munmap: bad LEN: bad number '16E': unknown suffix 'E'"),
        ("mprotect 0x10000000000000000 4K r--",
         "t.ops:1: mprotect: bad ADDR: number '0x10000000000000000' does not fit in 64 bits"),
        ("madvise 0 4KB dontneed", "t.ops:1: madvise: bad LEN: bad number '4KB': unknown suffix 'KB'"),
        ("mremap x 4K 8K", "t.ops:1: mremap: bad OLD: bad number 'x'"),
        ("mremap 0 4K- 8K", "t.ops:1: mremap: bad OLDLEN: bad number '4K-'"),
        ("mremap 0 4K 8.0K", "t.ops:1: mremap: bad NEWLEN: bad number '8.0K'"),
        ("mremap 0 4K 8 K", "t.ops:1: mremap: unknown flag 'K'"),  # FLAGS is 'K' here
        ("mremap 0 4K 8K maymove,fixed 0x1000g", "t.ops:1: mremap: bad NEWADDR: bad number '0x1000g'"),
        ("touch 0 -4K w", "t.ops:1: touch: bad LEN: negative number '-4K'"),
        # bad PROT
        ("mmap 0 4K rwx- private,anon", "t.ops:1: mmap: bad PROT 'rwx-'"),
        ("mmap 0 4K wr- private,anon", "t.ops:1: mmap: bad PROT 'wr-'"),
        ("mprotect 0 4K RW-", "t.ops:1: mprotect: bad PROT 'RW-'"),
        ("mprotect 0 4K r-", "t.ops:1: mprotect: bad PROT 'r-'"),
        # mmap flags
        ("mmap 0 4K rw- privte,anon", "t.ops:1: mmap: unknown flag 'privte'"),
        ("mmap 0 4K rw- private,anon,maymove", "t.ops:1: mmap: unknown flag 'maymove'"),
        ("mmap 0 4K rw- -", "t.ops:1: mmap: unknown flag '-'"),
        ("mmap 0 4K rw- private,anon,anon", "t.ops:1: mmap: flag 'anon' given twice"),
        ("mmap 0 4K rw- private,private,anon", "t.ops:1: mmap: flag 'private' given twice"),
        ("mmap 0 4K rw- private,,anon", "t.ops:1: mmap: empty flag in 'private,,anon'"),
        ("mmap 0 4K rw- private,anon,", "t.ops:1: mmap: empty flag in 'private,anon,'"),
        ("mmap 0 4K rw- anon", "t.ops:1: mmap: FLAGS need exactly one of 'private', 'shared', got neither"),
        ("mmap 0 4K rw- private,shared,anon",
         "t.ops:1: mmap: FLAGS need exactly one of 'private', 'shared', got both"),
        # NAME and OFFSET with and without anon
        ("file f 4K\nmmap 0 4K rw- private,anon f", "t.ops:2: mmap: NAME and OFFSET are not allowed with 'anon'"),
        ("file f 4K\nmmap 0 4K rw- private,anon f 0",
         "t.ops:2: mmap: NAME and OFFSET are not allowed with 'anon'"),
        ("mmap 0 4K rw- private", "t.ops:1: mmap: NAME is required without 'anon'"),
        ("mmap 0 4K rw- shared f", "t.ops:1: mmap: file 'f' is not declared by an earlier 'file' line"),
        ("mmap 0 4K rw- shared f\nfile f 4K", "t.ops:1: mmap: file 'f' is not declared by an earlier 'file' line"),
        ("file f 4K\nmmap 0 4K rw- shared g", "t.ops:2: mmap: file 'g' is not declared by an earlier 'file' line"),
        # mremap flags
        ("mremap 0 4K 8K anon", "t.ops:1: mremap: unknown flag 'anon'"),
        ("mremap 0 4K 8K private", "t.ops:1: mremap: unknown flag 'private'"),
        ("mremap 0 4K 8K maymove,-", "t.ops:1: mremap: unknown flag '-'"),
        ("mremap 0 4K 8K maymove,maymove", "t.ops:1: mremap: flag 'maymove' given twice"),
        ("mremap 0 4K 8K maymove,", "t.ops:1: mremap: empty flag in 'maymove,'"),
        # file
        ("file f 4K\nfile f 8K", "t.ops:2: file: 'f' declared twice"),
        ("file a/b 4K", "t.ops:1: file: bad NAME 'a/b': expected [A-Za-z0-9_.-]+"),
        ("file caf\u00e9 4K", "t.ops:1: file: bad NAME 'caf\u00e9': expected [A-Za-z0-9_.-]+"),
        ("file .. 4K", "t.ops:1: file: bad NAME '..': '.' and '..' are not file names"),
        ("file . 4K", "t.ops:1: file: bad NAME '.': '.' and '..' are not file names"),
        # madvise, touch
        ("madvise 0 4K free", "t.ops:1: madvise: unknown ADVICE 'free' (known: dontneed)"),
        ("madvise 0 4K DONTNEED", "t.ops:1: madvise: unknown ADVICE 'DONTNEED'"),
        ("touch 0 4K rw", "t.ops:1: touch: bad access 'rw': expected 'r' or 'w'"),
        ("touch 0 4K x", "t.ops:1: touch: bad access 'x': expected 'r' or 'w'"),
    ],
)
def test_refusals(text, message):
    assert refusal(text).startswith(message)


def test_refusal_attributes():
    with pytest.raises(ScriptError) as info:
        parse_script("fork\n\n# c\nmmap 0 4K rw- privte,anon\n", "demo.ops")
    e = info.value
    assert str(e) == (
        "demo.ops:4: mmap: unknown flag 'privte' (known: anon, fixed, "
        "fixed_noreplace, noreserve, populate, private, shared)"
    )
    assert (e.filename, e.line) == ("demo.ops", 4)
    assert e.reason.startswith("mmap: unknown flag 'privte'")


def test_default_filename():
    with pytest.raises(ScriptError) as info:
        parse_script("bogus")
    assert str(info.value).startswith("<script>:1: unknown op 'bogus'")


def test_first_error_wins_and_nothing_is_returned():
    # Line 2 is fine, line 3 and line 4 are both bad: line 3 is reported.
    text = "fork\nmunmap 0 4K\nfork 1\nnope\n"
    assert refusal(text).startswith("t.ops:3: fork:")


def test_a_file_declared_after_a_refused_line_is_not_reached():
    assert refusal("fork x\nfile f 4K\nfile f 4K").startswith("t.ops:1:")


def test_comment_hides_arguments():
    # '#' starts a comment even inside a token, so the count is checked
    # on what is left.
    assert refusal("munmap 0x1000#4K").startswith("t.ops:1: munmap: expected ADDR LEN, got 1 argument")
