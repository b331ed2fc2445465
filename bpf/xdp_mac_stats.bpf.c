// SPDX-License-Identifier: GPL-2.0
/* xdp_mac_stats: per-source-MAC packet/byte counts and per-interface pass/drop counters.
 *
 * Invariants:
 *  - the source MAC is hashed in the kernel with SipHash-2-4 under a 128-bit key that user space
 *    draws at load time (mac_key, never written to disk); only the 64-bit hash is a map key, so raw
 *    MACs never reach user space;
 *  - a frame is dropped only when it cannot be valid Ethernet: shorter than the 14-byte header, or a
 *    group (I/G bit set) source address, which IEEE 802 forbids as a source (the Linux bridge drops
 *    such frames too); every other frame is passed unchanged (an all-zero source, used by some
 *    virtual devices, is passed and counted);
 *  - the loader attaches it to Ethernet interfaces only (on other link types bytes 6..11 are not a MAC);
 *  - maps are bounded: mac_stats is an LRU (oldest sources are evicted); per-interface counters live
 *    in if_slots[ifindex % 64] (an array: no hashing on the fast path), each per-CPU copy tagged with
 *    the ifindex that claimed it; an interface whose slot is taken by another one on that CPU counts
 *    in the if_stats hash instead (64 entries), so per-interface counts are always exact.
 */
#include "x0_common.h"

#define ETH_HLEN_B 14
#define MAC_STATS_MAX 1024
#define IF_SLOTS 64 /* power of two */
#define IF_STATS_MAX 64

struct mac_counters {
	__u64 packets;
	__u64 bytes;
};

struct if_counters {
	__u64 ifindex; /* owner of this per-CPU copy (0 = free) */
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 passed;
	__u64 dropped;
	__u64 drop_runt;
	__u64 drop_bad_src;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, MAC_STATS_MAX);
	__type(key, __u64);
	__type(value, struct mac_counters);
} mac_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IF_SLOTS);
	__type(key, __u32);
	__type(value, struct if_counters);
} if_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, IF_STATS_MAX);
	__type(key, __u32);
	__type(value, struct if_counters);
} if_stats SEC(".maps");

/* SipHash key, set by the loader before load (read-only for the program afterwards). */
volatile const __u64 mac_key[2] = {0, 0};

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3) do {                                   \
	v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);   \
	v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                         \
	v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                         \
	v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);   \
} while (0)

/* SipHash-2-4 of a 6-byte message m (little-endian packed into the low 48 bits). */
static __always_inline __u64 siphash_mac(__u64 m, __u64 k0, __u64 k1)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	/* one final block: 6 message bytes, length (6) in the top byte */
	__u64 b = m | (6ULL << 56);

	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static __always_inline struct if_counters *if_slot(__u32 ifindex)
{
	__u32 slot = ifindex & (IF_SLOTS - 1);
	struct if_counters *c = bpf_map_lookup_elem(&if_slots, &slot);

	if (c) {
		if (c->ifindex == ifindex)
			return c;
		if (c->ifindex == 0) {
			c->ifindex = ifindex;
			return c;
		}
	}
	/* slot taken by another interface on this CPU: exact, slower path */
	c = bpf_map_lookup_elem(&if_stats, &ifindex);
	if (c)
		return c;
	struct if_counters zero = { .ifindex = ifindex };
	bpf_map_update_elem(&if_stats, &ifindex, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&if_stats, &ifindex);
}

SEC("xdp")
int xdp_mac_stats(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = (__u64)(data_end - data);
	struct if_counters *ic = if_slot(ctx->ingress_ifindex);

	if (ic) {
		ic->rx_packets += 1;
		ic->rx_bytes += len;
	}
	if (data + ETH_HLEN_B > data_end) {
		if (ic) { ic->dropped += 1; ic->drop_runt += 1; }
		return XDP_DROP;
	}
	/* source MAC is bytes 6..11: load as 16-bit + 32-bit, little-endian packing */
	const __u8 *src = (const __u8 *)data + 6;
	__u64 m = (__u64)(*(const __u16 *)src) | ((__u64)(*(const __u32 *)(src + 2)) << 16);
	if (src[0] & 1) {
		if (ic) { ic->dropped += 1; ic->drop_bad_src += 1; }
		return XDP_DROP;
	}
	__u64 h = siphash_mac(m, mac_key[0], mac_key[1]);
	struct mac_counters *mc = bpf_map_lookup_elem(&mac_stats, &h);
	if (mc) {
		mc->packets += 1;
		mc->bytes += len;
	} else {
		struct mac_counters init = { .packets = 1, .bytes = len };
		bpf_map_update_elem(&mac_stats, &h, &init, BPF_NOEXIST);
	}
	if (ic)
		ic->passed += 1;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
