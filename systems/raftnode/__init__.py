"""The bundled Raft key-value node (node_image/raftnode) as a system under test: its DB
(command line, status, leader, node-log checkers), its HTTP clients and its report panels."""
