"""Name parsing: DNS rules, wildcards, IDN, IPs, and what is refused (exit 2)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certkit.errors import NameError_
from certkit.names import MAX_NAME, common_name_for, parse_name, parse_names


@pytest.mark.parametrize(
    ("raw", "value", "kind"),
    [
        ("win.block25.or.kr", "win.block25.or.kr", "dns"),
        ("MAIL.Example.COM", "mail.example.com", "dns"),
        ("mail.example.com.", "mail.example.com", "dns"),
        ("localhost", "localhost", "dns"),
        ("*.example.com", "*.example.com", "dns"),
        ("메일.한국", "xn--h32bq4v.xn--3e0b707e", "dns"),
        ("bücher.example", "xn--bcher-kva.example", "dns"),
        ("127.0.0.1", "127.0.0.1", "ip"),
        ("::1", "::1", "ip"),
        ("[2001:db8:0::1]", "2001:db8::1", "ip"),
    ],
)
def test_valid_names(raw: str, value: str, kind: str) -> None:
    ident = parse_name(raw)
    assert (ident.value, ident.kind) == (value, kind)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("mail example.com", "spaces"),
        ("mail.example.com\r\nRCPT TO:<x>", "spaces"),  # CR/LF is whitespace
        ("mail\x00.example.com", "control"),
        ("a..b", "empty label"),
        (".example.com", "empty label"),
        ("mail.*.example.com", "left-most"),
        ("f*o.example.com", "left-most"),
        ("*.com", "two labels"),
        ("-mail.example.com", "letters, digits"),
        ("mail-.example.com", "letters, digits"),
        ("mail_x.example.com", "underscores"),
        ("a" * 64 + ".example.com", "longer than 63"),
        ("1.2.3.999", "all digits"),
        (".".join(["abcdefghi"] * 26), "253"),
    ],
)
def test_invalid_names(raw: str, reason: str) -> None:
    with pytest.raises(NameError_) as info:
        parse_name(raw)
    assert reason in str(info.value)
    assert info.value.exit_code == 2


def test_cn_is_first_and_always_a_san() -> None:
    ids = parse_names("mail.example.com", ["smtp.example.com", "MAIL.example.com", "10.0.0.1"])
    assert [i.value for i in ids] == ["mail.example.com", "smtp.example.com", "10.0.0.1"]


def test_long_first_name_has_no_cn() -> None:
    long_name = "a" * 60 + ".example.com"
    ids = parse_names(long_name)
    assert common_name_for(ids) is None
    assert common_name_for(parse_names("mail.example.com")) == "mail.example.com"


LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20).filter(
    lambda s: not s.isdigit()
)


@given(st.lists(LABEL, min_size=1, max_size=6))
def test_ascii_names_roundtrip(labels: list[str]) -> None:
    name = ".".join(labels)
    ident = parse_name(name.upper())
    assert ident.value == name
    assert parse_name(ident.value) == ident  # idempotent


@given(st.text(min_size=0, max_size=300))
def test_any_text_is_accepted_or_refused_cleanly(raw: str) -> None:
    """Whatever the input, parse_name returns a well-formed identity or raises NameError_."""
    try:
        ident = parse_name(raw)
    except NameError_ as exc:
        assert exc.exit_code == 2
        return
    if ident.kind == "dns":
        assert len(ident.value) <= MAX_NAME
        assert ident.value.isascii()
        assert all(0 < len(label) <= 63 for label in ident.value.split("."))
        assert not any(ch.isspace() for ch in ident.value)
