"""The network layer, apart from any DB: grudges (who stops hearing whom), applied with
iptables inside each node's network namespace (containers, SSH hosts, network namespaces) or,
for processes sharing the host's namespace, by cgroup.

A DB with the "partition" capability hands out a Net (chaos.interfaces.Network.net()); the
partition nemesis, and later link faults, only ever call Net.drop(grudge) and Net.heal().
"""

from chaos.net.base import Net, NetError
from chaos.net.grudge import Grudge, directed_links, normalize, one_way, symmetric, to_value

__all__ = ["Net", "NetError", "Grudge", "directed_links", "normalize", "one_way", "symmetric", "to_value"]
