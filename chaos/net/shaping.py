"""Bandwidth caps as tc qdiscs: an htb class per capped link on the sender's interface.

A cap on sender -> receiver shapes the sender's egress towards the receiver's address (a
receiver cannot shape what arrives without an ifb device, which containers lack). Traffic to
anyone else is unclassified and leaves through htb's direct queue, unshaped. Only for a node
with a network namespace of its own: on the host's loopback a root qdisc would shape every
process of the host, so the local provisioner refuses bandwidth caps (chaos.provision.local).
"""

from __future__ import annotations

import ipaddress

# Bytes htb may send at line rate before the cap bites: two full-size packets, as tbf wants at
# least one MTU of burst; small enough that a measured rate over a second is the cap's.
BURST_BYTES = 3200


def device_lookup(address: str) -> str:
    """Shell that sets $dev to the interface holding `address` (fails when there is none)."""
    ip = str(ipaddress.ip_address(address))
    return (f"dev=$(ip -o -4 addr show | awk '$4 ~ /^{ip.replace('.', '[.]')}[/]/ {{print $2; exit}}'); "
            f"[ -n \"$dev\" ] || {{ echo 'no interface holds {ip}' >&2; exit 1; }}; ")


def shaping_script(own_address: str, caps: list[tuple[str, int]]) -> str:
    """Replace the root qdisc of the node's interface by htb with one class per (receiver
    address, rate in kbit/s); with no caps, remove it (the interface's default comes back)."""
    script = device_lookup(own_address) + "tc qdisc del dev \"$dev\" root 2>/dev/null; "
    if not caps:
        return script + "true"
    lines = ["tc qdisc add dev \"$dev\" root handle 1: htb"]
    for i, (receiver, rate) in enumerate(sorted(caps), start=10):
        ip = str(ipaddress.ip_address(receiver))
        lines.append(f"tc class add dev \"$dev\" parent 1: classid 1:{i} htb rate {int(rate)}kbit "
                     f"ceil {int(rate)}kbit burst {BURST_BYTES} cburst {BURST_BYTES}")
        lines.append(f"tc filter add dev \"$dev\" parent 1: protocol ip prio 1 u32 match ip dst {ip}/32 flowid 1:{i}")
    return script + " && ".join(lines)


def show_script(own_address: str) -> str:
    return device_lookup(own_address) + "tc qdisc show dev \"$dev\"; tc class show dev \"$dev\""
