"""Reading the host's apt sources (deb822 and one-line) to find the mirror debootstrap uses.

The mirror addresses below are placeholders on reserved example domains; a real host's are read
at run time and never written into the repository.
"""

import os

import pytest

from chaos.provision.apt_sources import (AptSourcesError, host_codename, host_mirror, parse_deb822,
                                         parse_one_line, pick_mirror, read_host_sources)

DEB822 = """\
Types: deb deb-src
# a comment inside a stanza
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# comment line
deb http://mirror.example.net/debian bookworm main non-free-firmware
deb-src http://mirror.example.net/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://other.example.net/debian bookworm-backports main  # trailing
deb http://flat.example.net/repo ./
"""


def test_deb822_expands_every_type_uri_and_suite_of_a_stanza():
    sources = parse_deb822(DEB822, "debian.sources")
    triples = [(s.type, s.uri, s.suite) for s in sources]
    assert triples == [
        ("deb", "http://mirror.example.org/debian", "bookworm"),
        ("deb", "http://mirror.example.org/debian", "bookworm-updates"),
        ("deb-src", "http://mirror.example.org/debian", "bookworm"),
        ("deb-src", "http://mirror.example.org/debian", "bookworm-updates"),
        ("deb", "http://security.example.org/debian-security", "bookworm-security"),
    ]
    assert sources[0].components == ("main", "contrib")
    assert sources[0].options["signed-by"].endswith("debian-archive-keyring.gpg")
    assert sources[0].origin == "debian.sources:1"


def test_deb822_skips_stanzas_with_enabled_no():
    assert not any("disabled" in s.uri for s in parse_deb822(DEB822))


def test_deb822_multiline_field_values_are_continuations():
    text = "Types: deb\nURIs: http://m.example.org/debian\nSuites: bookworm\nComponents: main\n" \
           "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
    (source,) = parse_deb822(text)
    assert source.options["signed-by"].startswith("\n-----BEGIN")


def test_one_line_format_with_options_comments_and_flat_repositories():
    sources = parse_one_line(ONE_LINE, "sources.list")
    assert [(s.type, s.uri, s.suite) for s in sources] == [
        ("deb", "http://mirror.example.net/debian", "bookworm"),
        ("deb-src", "http://mirror.example.net/debian", "bookworm"),
        ("deb", "http://other.example.net/debian", "bookworm-backports"),
        ("deb", "http://flat.example.net/repo", "./"),
    ]
    assert sources[0].components == ("main", "non-free-firmware")
    assert sources[2].options == {"arch": "amd64", "signed-by": "/usr/share/keyrings/x.gpg"}
    assert sources[2].origin == "sources.list:4"


@pytest.mark.parametrize("text, problem", [
    ("rpm http://x.example.org/ bookworm main", "expected 'deb' or 'deb-src'"),
    ("deb [arch=amd64 http://x.example.org/ bookworm main", "never closed"),
    ("deb [trusted] http://x.example.org/ bookworm main", "not key=value"),
    ("deb http://x.example.org/", "expected a URI and a suite"),
    ("deb http://x.example.org/ bookworm", "needs at least one component"),
])
def test_one_line_errors_name_the_file_line_and_problem(text, problem):
    with pytest.raises(AptSourcesError, match=problem) as err:
        parse_one_line("# header\n" + text, "my.list")
    assert str(err.value).startswith("my.list:2:")


@pytest.mark.parametrize("text, problem", [
    ("Types: deb\nSuites: bookworm\n", "no Uris field"),
    ("Types: rpm\nURIs: http://x.example.org\nSuites: b\n", "unknown type 'rpm'"),
    ("this is not a field\n", "expected 'Field: value'"),
    (" continuation first\n", "continuation line without a field"),
])
def test_deb822_errors_name_the_file_line_and_problem(text, problem):
    with pytest.raises(AptSourcesError, match=problem) as err:
        parse_deb822(text, "x.sources")
    assert str(err.value).startswith("x.sources:")


def test_pick_mirror_takes_the_exact_release_suite_with_main_not_updates_or_security():
    sources = parse_deb822(DEB822) + parse_one_line(ONE_LINE)
    assert pick_mirror(sources, "bookworm") == "http://mirror.example.org/debian"
    # the deb-src line and the backports suite never count
    assert pick_mirror(parse_one_line(ONE_LINE), "bookworm") == "http://mirror.example.net/debian"


def test_pick_mirror_without_a_matching_suite_lists_what_the_host_has():
    with pytest.raises(AptSourcesError, match=r"no apt source for suite 'trixie'.*bookworm-security"):
        pick_mirror(parse_deb822(DEB822), "trixie")


def test_pick_mirror_ignores_cdrom_sources():
    sources = parse_one_line("deb cdrom:[Debian 12]/ bookworm main\n")
    with pytest.raises(AptSourcesError):
        pick_mirror(sources, "bookworm")


def _fake_root(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_read_host_sources_reads_sources_list_then_list_and_sources_files_ignoring_others(tmp_path):
    root = _fake_root(tmp_path, {
        "etc/apt/sources.list": "deb http://a.example.org/debian bookworm main\n",
        "etc/apt/sources.list.d/b.sources": "Types: deb\nURIs: http://b.example.org/debian\n"
                                            "Suites: bookworm\nComponents: main\n",
        "etc/apt/sources.list.d/c.list": "deb http://c.example.org/debian bookworm main\n",
        "etc/apt/sources.list.d/d.list.disabled": "deb http://d.example.org/debian bookworm main\n",
        "etc/os-release": 'NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n',
    })
    uris = [s.uri for s in read_host_sources(root)]
    assert uris == ["http://a.example.org/debian", "http://b.example.org/debian", "http://c.example.org/debian"]
    assert host_codename(root) == "bookworm"
    assert host_mirror(root=root) == ("http://a.example.org/debian", "bookworm")


def test_deb822_only_host_like_a_current_debian_install(tmp_path):
    root = _fake_root(tmp_path, {"etc/apt/sources.list.d/debian.sources": DEB822,
                                 "etc/os-release": "VERSION_CODENAME=bookworm\n"})
    assert host_mirror(root=root) == ("http://mirror.example.org/debian", "bookworm")


@pytest.mark.skipif(not os.path.isdir("/etc/apt"), reason="not a Debian-family host")
def test_this_hosts_sources_parse():
    # Whatever the host has must parse without error (the mirror itself is not asserted).
    read_host_sources("/")
