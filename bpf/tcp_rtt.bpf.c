// SPDX-License-Identifier: GPL-2.0
/* tcp_rtt: histogram of smoothed RTT samples from the tcp:tcp_probe tracepoint.
 *
 * Invariants:
 *  - attached as a raw tracepoint; arguments are (sk, skb); the sample is tcp_sock->srtt_us >> 3
 *    (the kernel keeps srtt scaled by 8), read with CO-RE so the object runs on any BTF kernel;
 *  - sockets of other network namespaces are skipped when the loader set netns_ino (x0_common.h);
 *  - only a log2 histogram (32 buckets, microseconds) and a sum/count pair leave the kernel;
 *  - an unreadable socket is counted in rtt_events[RTT_UNREADABLE] and produces no sample.
 */
#include "x0_sock.h"
#include <bpf/bpf_tracing.h>

enum { RTT_SAMPLES = 0, RTT_SUM_US = 1, RTT_UNREADABLE = 2, RTT_ZERO = 3, RTT_OTHER_NETNS = 4, RTT_SLOTS = 8 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, X0_HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} rtt_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RTT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} rtt_events SEC(".maps");

SEC("raw_tp/tcp_probe")
int BPF_PROG(tcp_rtt, struct sock *sk, const struct sk_buff *skb)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 srtt = 0;

	if (!x0_sock_in_scope(sk)) {
		x0_percpu_inc(&rtt_events, RTT_OTHER_NETNS, 1);
		return 0;
	}
	if (bpf_core_read(&srtt, sizeof(srtt), &tp->srtt_us) != 0) {
		x0_percpu_inc(&rtt_events, RTT_UNREADABLE, 1);
		return 0;
	}
	srtt >>= 3;
	if (srtt == 0) {
		x0_percpu_inc(&rtt_events, RTT_ZERO, 1);
		return 0;
	}
	x0_percpu_inc(&rtt_hist, x0_log2_bucket(srtt), 1);
	x0_percpu_inc(&rtt_events, RTT_SAMPLES, 1);
	x0_percpu_inc(&rtt_events, RTT_SUM_US, srtt);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
