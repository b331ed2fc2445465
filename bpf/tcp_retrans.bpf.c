// SPDX-License-Identifier: GPL-2.0
/* tcp_retrans: counts TCP retransmissions from the tcp:tcp_retransmit_skb tracepoint.
 *
 * Invariants:
 *  - attached as a raw tracepoint; arguments are (sk, skb, err) on recent kernels and (sk, skb) on
 *    older ones (failures then read as 0): two programs, the loader keeps the one that attaches;
 *  - sockets of other network namespaces are skipped when the loader set netns_ino (x0_common.h);
 *  - counts only: retrans_by_state[socket state] (index 0 = state unreadable) and
 *    retrans_events[total, failed (err != 0)]; no addresses or ports.
 */
#include "x0_sock.h"
#include <bpf/bpf_tracing.h>

#define TCP_STATE_SLOTS 16

enum { RT_TOTAL = 0, RT_FAILED = 1, RT_OTHER_NETNS = 2, RT_SLOTS = 4 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_STATE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} retrans_by_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} retrans_events SEC(".maps");

static __always_inline int count_retrans(const struct sock *sk, int err)
{
	unsigned char state = 0;

	if (!x0_sock_in_scope(sk)) {
		x0_percpu_inc(&retrans_events, RT_OTHER_NETNS, 1);
		return 0;
	}
	x0_percpu_inc(&retrans_events, RT_TOTAL, 1);
	if (err != 0)
		x0_percpu_inc(&retrans_events, RT_FAILED, 1);
	if (bpf_core_read(&state, sizeof(state), &sk->__sk_common.skc_state) != 0 || state >= TCP_STATE_SLOTS)
		state = 0;
	x0_percpu_inc(&retrans_by_state, state, 1);
	return 0;
}

/* Two alternatives for one tracepoint, tried in this order by the loader (first that attaches wins):
 * kernels whose tracepoint passes the error of the retransmission, then kernels with (sk, skb) only
 * (Debian's 6.1, for one): the kernel refuses to attach a program that reads past the tracepoint's
 * last argument. */
SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(tcp_retrans, const struct sock *sk, const struct sk_buff *skb, int err)
{
	return count_retrans(sk, err);
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(tcp_retrans_2args, const struct sock *sk, const struct sk_buff *skb)
{
	return count_retrans(sk, 0);
}

char LICENSE[] SEC("license") = "GPL";
