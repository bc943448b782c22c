"""etcd 3.4 as a system under test for splitbrain: a plugin in a package of its own."""
