// SPDX-License-Identifier: GPL-2.0
/* tcp_states: counts TCP state transitions from the sock:inet_sock_set_state tracepoint.
 *
 * Invariants:
 *  - attached as a raw tracepoint (no tracefs, no kprobes); arguments are (sk, oldstate, newstate);
 *  - sockets of other network namespaces are skipped when the loader set netns_ino (x0_common.h);
 *  - only counts leave the kernel: transitions[old * 16 + new], no addresses or ports;
 *  - a socket whose protocol cannot be read is still counted (the tracepoint is emitted for TCP)
 *    and the failed read is counted in events[EV_UNREADABLE]; a socket known to be non-TCP is skipped.
 */
#include "x0_sock.h"
#include <bpf/bpf_tracing.h>

#define TCP_STATE_SLOTS 16
#define IPPROTO_TCP_NUM 6

enum { EV_SEEN = 0, EV_COUNTED = 1, EV_NOT_TCP = 2, EV_UNREADABLE = 3, EV_OUT_OF_RANGE = 4, EV_OTHER_NETNS = 5,
       EV_SLOTS = 8 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_STATE_SLOTS * TCP_STATE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} transitions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EV_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} state_events SEC(".maps");

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcp_states, const struct sock *sk, int oldstate, int newstate)
{
	__u16 proto = 0;

	if (!x0_sock_in_scope(sk)) {
		x0_percpu_inc(&state_events, EV_OTHER_NETNS, 1);
		return 0;
	}
	x0_percpu_inc(&state_events, EV_SEEN, 1);
	if (bpf_core_read(&proto, sizeof(proto), &sk->sk_protocol) != 0)
		x0_percpu_inc(&state_events, EV_UNREADABLE, 1);
	else if (proto != IPPROTO_TCP_NUM) {
		x0_percpu_inc(&state_events, EV_NOT_TCP, 1);
		return 0;
	}
	if (oldstate < 0 || oldstate >= TCP_STATE_SLOTS || newstate < 0 || newstate >= TCP_STATE_SLOTS) {
		x0_percpu_inc(&state_events, EV_OUT_OF_RANGE, 1);
		return 0;
	}
	x0_percpu_inc(&transitions, (__u32)(oldstate * TCP_STATE_SLOTS + newstate), 1);
	x0_percpu_inc(&state_events, EV_COUNTED, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
