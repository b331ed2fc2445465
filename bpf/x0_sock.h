/* Socket scope for the TCP tracepoint programs (not used by XDP programs, whose .rodata holds
 * only their own globals).
 *
 * netns_ino is set by the loader before load: the inode number of the network namespace whose
 * sockets are counted (0 = every namespace). Tracepoints fire for every socket on the machine, but
 * a node's telemetry is about its own namespace. It is the only global of the object that includes
 * this header, so the object's .rodata is exactly one __u32.
 */
#ifndef X0_SOCK_H
#define X0_SOCK_H

#include "x0_common.h"

volatile const __u32 netns_ino = 0;

static __always_inline int x0_sock_in_scope(const struct sock *sk)
{
	__u32 ino = 0;

	if (!netns_ino)
		return 1;
	ino = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return ino == netns_ino;
}

#endif
