"""I/O adapters between the kernel and the sans-I/O core: UDP sockets and netlink."""
