"""Plain typed records shared by every piece: sockets, processes, snapshots."""
