/* Shared definitions for the x0tta6bl4 BPF programs.
 *
 * Every map here is bounded (max_entries fixed at build time) and holds aggregates only:
 * counters, histograms, keyed hashes. No packet payload and no raw address leaves the kernel.
 * Struct layouts are mirrored in x0node/telemetry/maps.py; change both together.
 */
#ifndef X0_COMMON_H
#define X0_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Log2 histogram with 32 buckets: bucket i counts values v with 2^(i-1) <= v < 2^i (bucket 0: v == 0). */
#define X0_HIST_BUCKETS 32

static __always_inline __u32 x0_log2_bucket(__u64 v)
{
	__u32 b = 0;
	/* unrolled binary search: bounded, no loops for the verifier */
	if (v >= (1ULL << 16)) { v >>= 16; b += 16; }
	if (v >= (1ULL << 8))  { v >>= 8;  b += 8; }
	if (v >= (1ULL << 4))  { v >>= 4;  b += 4; }
	if (v >= (1ULL << 2))  { v >>= 2;  b += 2; }
	if (v >= (1ULL << 1))  { v >>= 1;  b += 1; }
	if (v >= 1) b += 1;
	if (b >= X0_HIST_BUCKETS) b = X0_HIST_BUCKETS - 1;
	return b;
}

static __always_inline void x0_percpu_inc(void *map, __u32 idx, __u64 by)
{
	__u64 *slot = bpf_map_lookup_elem(map, &idx);
	if (slot)
		*slot += by;
}

#endif
