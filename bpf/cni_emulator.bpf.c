// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A CNI's peer-redirect fast path, reduced to what breaks bridged VMs.
 * Lab only (vmpeer demo, the tests, the benchmark): shipped in the package for
 * the demo, never attached outside a lab netns.
 *
 * Attached at tc ingress of a node's uplink and of local pods' host veths,
 * like Calico's programs with bpfRedirectToPeer enabled. For an IPv4 packet to
 * a local pod (emu_routes):
 *   - the first packet of a flow (no entry in emu_flows, or a timed-out one)
 *     is recorded and left to the kernel (TC_ACT_OK): routing, the neighbour
 *     table and the forwarding path write the right MACs;
 *   - every later packet is routed as Calico's BPF forwarding does (TTL
 *     decremented, IPv4 checksum updated; TTL <= 1 is left to the kernel) and
 *     goes through bpf_redirect_peer(host veth) with the Ethernet header
 *     untouched: no MAC rewrite. This is the fault.
 * Everything else passes (TC_ACT_OK), as a CNI's program ends classification.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "cni_emulator.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct emu_route);
} emu_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct emu_flow);
	__type(value, struct emu_flow_state);
} emu_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emu_config);
} emu_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emu_stats);
} emu_stats SEC(".maps");

#define STAT(field)                                                    \
	do {                                                           \
		__u32 zero_ = 0;                                       \
		struct emu_stats *s_ = bpf_map_lookup_elem(&emu_stats, &zero_); \
		if (s_)                                                \
			__sync_fetch_and_add(&s_->field, 1);           \
	} while (0)

/* ICMP echo request / reply: the identifier plays the source port. */
#define ICMP_ECHOREPLY_ 0
#define ICMP_ECHO_ 8

/* Fills the flow key's ports from the L4 header; 0s when there is none. */
static __always_inline void l4_ports(struct iphdr *ip, void *data_end, struct emu_flow *k)
{
	__u8 *l4 = (__u8 *)ip + ip->ihl * 4;

	if (ip->frag_off & bpf_htons(0x1fff)) /* a non-first fragment */
		return;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__be16 *ports = (__be16 *)l4;

		if ((void *)(ports + 2) > data_end)
			return;
		k->sport = ports[0];
		k->dport = ports[1];
	} else if (ip->protocol == IPPROTO_ICMP) {
		if ((void *)(l4 + 8) > data_end)
			return;
		if (l4[0] == ICMP_ECHO_ || l4[0] == ICMP_ECHOREPLY_)
			k->sport = *(__be16 *)(l4 + 4);
	}
}

static __always_inline int expired(const struct emu_flow_state *st, __u64 now)
{
	__u32 zero = 0;
	struct emu_config *cfg = bpf_map_lookup_elem(&emu_config, &zero);
	__u64 idle = EMU_DEFAULT_IDLE_TIMEOUT_NS, lifetime = 0;

	if (cfg) {
		if (cfg->idle_timeout_ns)
			idle = cfg->idle_timeout_ns;
		lifetime = cfg->lifetime_ns;
	}
	if (now - st->last_seen_ns >= idle)
		return 1;
	return lifetime && now - st->created_ns >= lifetime;
}

SEC("tc")
int cni_emulator(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct emu_flow key = {};
	struct emu_flow_state *st, fresh = {};
	struct emu_route *route;
	struct iphdr *ip;
	__u64 now;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto other;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		goto other;

	route = bpf_map_lookup_elem(&emu_routes, &ip->daddr);
	if (!route)
		goto other;
	if (route->flags & EMU_ROUTE_NO_REDIRECT) {
		STAT(opted_out);
		return TC_ACT_OK;
	}

	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.proto = ip->protocol;
	l4_ports(ip, data_end, &key);

	now = bpf_ktime_get_ns();
	st = bpf_map_lookup_elem(&emu_flows, &key);
	if (!st || expired(st, now)) {
		if (st)
			STAT(expired);
		fresh.created_ns = now;
		fresh.last_seen_ns = now;
		fresh.packets = 1;
		bpf_map_update_elem(&emu_flows, &key, &fresh, BPF_ANY);
		STAT(first);
		return TC_ACT_OK;
	}

	if (ip->ttl <= 1)
		return TC_ACT_OK; /* the kernel answers time-exceeded */
	st->last_seen_ns = now;
	st->packets++;
	STAT(redirected);
	/* one routed hop: the TTL is the high byte of its 16-bit word (RFC 1624) */
	{
		__u32 sum = (__u32)ip->check + bpf_htons(0x0100);

		ip->check = (__u16)(sum + (sum >= 0xffff));
		ip->ttl--;
	}
	return bpf_redirect_peer(route->ifindex, 0);

other:
	STAT(other);
	return TC_ACT_OK;
}
