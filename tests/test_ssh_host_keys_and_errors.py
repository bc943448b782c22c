"""SSH connections refuse what they cannot trust, and say why: an unknown host key (strict, the
default), a changed host key (also with accept-new, which records only hosts seen for the first
time), a key the host does not accept, an unreachable host; RSA keys sign with rsa-sha2. Against
a real sshd in a network namespace of our own (tests/ssh_hosts.py)."""

import os

import pytest

import ssh_hosts
from chaos.provision.base import ProvisionError
from chaos.provision.ssh import Host, SSHConnection, load_inventory, parse_hosts

pytestmark = [pytest.mark.skipif(ssh_hosts.unavailable() is not None and not os.environ.get("CI"),
                                 reason=f"SSH hosts: {ssh_hosts.unavailable()}"),
              pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with ssh_hosts.SSHHosts(1, tmp_path_factory.mktemp("ssh-keys")) as h:
        yield h


def host(hosts, key=None):
    return Host(address=hosts.addresses[0], user="root", port=hosts.port, key=key or hosts.key)


def test_a_known_host_key_connects(hosts):
    conn = SSHConnection(host(hosts), hosts.known_hosts).connect()
    try:
        assert conn.run("echo hello")[1] == "hello\n"
    finally:
        conn.close()


def test_an_unknown_host_key_is_refused_by_default(hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ProvisionError) as e:
        SSHConnection(host(hosts), str(empty)).connect()
    assert "unknown host key ssh-ed25519 SHA256:" in str(e.value) and "accept-new" in str(e.value)
    assert empty.read_text() == ""  # nothing was recorded


def test_accept_new_records_an_unknown_host_and_then_trusts_it(hosts, tmp_path):
    path = tmp_path / "known_hosts"
    conn = SSHConnection(host(hosts), str(path), policy="accept-new").connect()
    conn.close()
    assert path.read_text() == f"[{hosts.addresses[0]}]:{hosts.port} {hosts.public_host_key(0)}\n"
    # recorded: a strict connection now trusts it
    conn = SSHConnection(host(hosts), str(path)).connect()
    conn.close()


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_a_changed_host_key_is_refused_even_with_accept_new(hosts, tmp_path, policy):
    other = tmp_path / "other_host_key"
    ssh_hosts.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    kind, data = open(str(other) + ".pub").read().split()[:2]
    path = tmp_path / "known_hosts"
    path.write_text(f"[{hosts.addresses[0]}]:{hosts.port} {kind} {data}\n")
    with pytest.raises(ProvisionError) as e:
        SSHConnection(host(hosts), str(path), policy=policy).connect()
    assert "the host key changed" in str(e.value) and "ssh-keygen -R" in str(e.value)
    assert path.read_text() == f"[{hosts.addresses[0]}]:{hosts.port} {kind} {data}\n"  # unchanged


def test_a_recorded_key_of_another_type_is_a_changed_key_for_accept_new(hosts, tmp_path):
    other = tmp_path / "other_rsa"
    ssh_hosts.sh("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(other))
    kind, data = open(str(other) + ".pub").read().split()[:2]
    path = tmp_path / "known_hosts"
    path.write_text(f"[{hosts.addresses[0]}]:{hosts.port} {kind} {data}\n")
    with pytest.raises(ProvisionError) as e:
        SSHConnection(host(hosts), str(path), policy="accept-new").connect()
    assert "the host key changed" in str(e.value) and "ssh-rsa" in str(e.value)


def test_a_key_the_host_does_not_accept_is_refused_with_its_fingerprint(hosts, tmp_path):
    stranger = tmp_path / "id_stranger"
    ssh_hosts.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger))
    with pytest.raises(ProvisionError) as e:
        SSHConnection(host(hosts, key=str(stranger)), hosts.known_hosts).connect()
    assert "refused the key" in str(e.value) and "ssh-ed25519 SHA256:" in str(e.value)


def test_an_rsa_key_authenticates_with_rsa_sha2(hosts, tmp_path):
    # Debian's OpenSSH refuses SHA-1 (ssh-rsa) signatures: only rsa-sha2-256/512 get in
    rsa = tmp_path / "id_rsa"
    ssh_hosts.sh("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(rsa))
    authorized = os.path.join(hosts.dir, "authorized_keys")
    before = open(authorized).read()
    with open(authorized, "a") as f:
        f.write(open(str(rsa) + ".pub").read())
    try:
        conn = SSHConnection(host(hosts, key=str(rsa)), hosts.known_hosts).connect()
        try:
            assert conn.run("id -u")[1].strip() == "0"
        finally:
            conn.close()
    finally:
        with open(authorized, "w") as f:
            f.write(before)
    log = open(os.path.join(hosts.dir, "sshd1.log")).read()
    assert "Accepted publickey for root" in log and "RSA SHA256:" in log


def test_an_unreachable_host_is_named(hosts):
    closed = Host(address=hosts.addresses[0], user="root", port=hosts.port + 1, key=hosts.key)
    with pytest.raises(ProvisionError) as e:
        SSHConnection(closed, hosts.known_hosts, timeout=3).connect()
    assert f"root@{hosts.addresses[0]}:{hosts.port + 1}: unreachable" in str(e.value)


def test_a_missing_key_file_is_named(hosts, tmp_path):
    with pytest.raises(ProvisionError, match="no such file"):
        SSHConnection(host(hosts, key=str(tmp_path / "nope")), hosts.known_hosts).connect()


def test_hosts_flags_and_inventories_read_with_clear_errors(tmp_path):
    assert parse_hosts("root@10.0.0.1,10.0.0.2:2222,alice@h3", key="/k") == [
        Host("10.0.0.1", "root", 22, "/k"), Host("10.0.0.2", "root", 2222, "/k"), Host("h3", "alice", 22, "/k")]
    with pytest.raises(ValueError, match="port must be 1..65535"):
        parse_hosts("h:70000")
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("defaults: {user: bob, key: /k}\nhosts:\n  - {address: 10.0.0.1, node_address: 192.168.9.1}\n"
                         "  - {address: 10.0.0.2, prot: 22}\n")
    with pytest.raises(ValueError, match=r"hosts\[1\]: unknown key 'prot'"):
        load_inventory(str(inventory))
    inventory.write_text("hosts:\n  - {address: 10.0.0.1, node_address: 192.168.9.1}\nhost_key_policy: accept-new\n")
    hosts, settings = load_inventory(str(inventory))
    assert hosts[0].service_address == "192.168.9.1" and settings == {"host_key_policy": "accept-new"}


def test_what_a_host_lacks_is_named_for_the_capability_it_costs():
    from chaos.provision.ssh import SSHHostDB

    class Service(SSHHostDB):
        name = "service"

        def command(self, node, nodes):
            return ["service"]

    db = Service("t-facts", 2, hosts=[Host("10.0.0.1", "alice", 22, "/k"), Host("10.0.0.2", "root", 22, "/k")])
    db._facts = {"alice@10.0.0.1:22": {"uid": "1000", "python": "3.11", "iptables": "/usr/sbin/iptables",
                                       "sudo": "no sudo: a password is required", "arch": os.uname().machine,
                                       "ssh": "10.0.0.9 40000 10.0.0.1 22"},
                 "root@10.0.0.2:22": {"uid": "0", "python": "3.9", "arch": os.uname().machine,
                                      "ssh": "10.0.0.9 40002 10.0.0.2 22"}}
    assert db._host_problem("partition") == (
        "alice@10.0.0.1:22: alice is not root and cannot run iptables through `sudo -n` (sudo: a password is "
        "required); give alice passwordless sudo (NOPASSWD) or connect as root")
    assert db._host_problem("python") == "root@10.0.0.2:22 has python3 3.9; the node needs 3.11 or newer"
    db._facts["alice@10.0.0.1:22"]["sudo"] = "ok"
    assert db._host_problem("partition") == "root@10.0.0.2:22 has no iptables (apt-get install iptables)"
    del db._facts["root@10.0.0.2:22"]["python"]
    assert db._host_problem("python") == "root@10.0.0.2:22 has no python3 (apt-get install python3)"
