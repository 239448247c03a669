// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * vmpeer data path: make peer-redirected frames reach bridged KubeVirt guests.
 *
 *   fixup    tc ingress of the VM pod's bridge uplink port (eth0-nic): frames
 *            for a known guest that carry another destination MAC are
 *            re-addressed to the guest, as the kernel's forwarding path would.
 *   redirect tc ingress of host interfaces: the corrected fast path itself,
 *            forward to a known guest and bpf_redirect_peer() into its pod.
 *
 * With the bridge bypass (VMPEER_EP_BYPASS), the pod's bridge leaves the path
 * of the guest's unicast IP traffic in both directions:
 *   fixup      sends frames for the guest straight to the guest port (tap0);
 *   from_guest tc ingress of the guest port: frames from the guest to its
 *              gateway go straight into the host veth (bpf_redirect_peer()).
 *
 * The programs leave every other frame byte-for-byte unchanged and return
 * TC_ACT_UNSPEC (TCX_NEXT under tcx) so that the next program at the hook runs.
 */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "frame.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VMPEER_SLOTS);
	__type(key, __u32);
	__type(value, struct vmpeer_endpoint);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vmpeer_hash_key);
} hash_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VMPEER_STAT_MAX);
	__type(key, __u32); /* enum vmpeer_stat */
	__type(value, __u64);
} stats SEC(".maps");

/* Count the outcome and let the next program at the hook run. */
static __always_inline int next(enum vmpeer_stat reason)
{
	__u32 slot = reason;
	__u64 *count = bpf_map_lookup_elem(&stats, &slot);

	if (count)
		(*count)++;
	return TC_ACT_UNSPEC;
}

/* The endpoint for the frame's destination IP, or NULL (see vmpeer.h). */
static __always_inline struct vmpeer_endpoint *find_endpoint(const struct frame *f)
{
	const struct vmpeer_hash_key *key;
	__u32 zero = 0, home;

	key = bpf_map_lookup_elem(&hash_key, &zero);
	if (!key)
		return 0;
	home = vmpeer_slot(key, f->words);

#pragma unroll
	for (__u32 i = 0; i < VMPEER_PROBES; i++) {
		__u32 slot = (home + i) & (VMPEER_SLOTS - 1);
		struct vmpeer_endpoint *ep = bpf_map_lookup_elem(&endpoints, &slot);
		const __u32 *k;

		if (!ep || !ep->flags)
			return 0;
		k = (const __u32 *)ep->key.addr;
		if ((ep->flags & VMPEER_EP_LIVE) &&
		    !((k[0] ^ f->words[0]) | (k[1] ^ f->words[1]) | (k[2] ^ f->words[2]) | (k[3] ^ f->words[3])))
			return ep;
	}
	return 0;
}

/*
 * What eth_type_trans() would say of a frame addressed to the guest on the
 * pod's bridge port. bpf_redirect_peer() never re-runs it, and since Linux
 * 6.15 (c4327229948879814229b46aa26a750718888503) it resets pkt_type to
 * PACKET_HOST, so frames that took a fast path carry the wrong class until
 * `fixup` sets it.
 */
static __always_inline void classify_for_guest(struct __sk_buff *skb)
{
	if (skb->pkt_type != PACKET_OTHERHOST)
		bpf_skb_change_type(skb, PACKET_OTHERHOST);
}

SEC("tc")
int fixup(struct __sk_buff *skb)
{
	struct vmpeer_endpoint *ep;
	struct frame f;
	enum vmpeer_stat reason;

	reason = parse_frame(skb, &f, KEY_DEST);
	if (reason != VMPEER_STAT_MAX)
		return next(reason);

	ep = find_endpoint(&f);
	if (!ep)
		return next(VMPEER_STAT_PASS_UNKNOWN);

	if (mac_equal(f.eth->dest, ep->guest_mac)) {
		reason = VMPEER_STAT_PASS_ADDRESSED;
	} else {
		/* guest_mac and gateway_mac sit side by side, as dest and source do */
		__builtin_memcpy(f.eth->dest, ep->guest_mac, 2 * ETH_ALEN);
		ep->fixed++;
		reason = VMPEER_STAT_FIXED;
	}

	/* ifindexes are per netns: the uplink check keeps the guest port's
	 * ifindex from being used in another pod's netns */
	if ((ep->flags & VMPEER_EP_BYPASS) && skb->ifindex == ep->uplink_ifindex) {
		ep->bypassed_in++;
		next(reason);
		return bpf_redirect(ep->guest_ifindex, 0);
	}

	classify_for_guest(skb);
	if (reason == VMPEER_STAT_PASS_ADDRESSED)
		ep->passed++;
	return next(reason);
}

SEC("tc")
int from_guest(struct __sk_buff *skb)
{
	struct vmpeer_endpoint *ep;
	struct frame f;
	enum vmpeer_stat reason;

	reason = parse_frame(skb, &f, KEY_SOURCE);
	if (reason != VMPEER_STAT_MAX)
		return next(reason);

	ep = find_endpoint(&f);
	if (!ep)
		return next(VMPEER_STAT_PASS_UNKNOWN);
	if (!(ep->flags & VMPEER_EP_BYPASS) || skb->ifindex != ep->guest_ifindex)
		return next(VMPEER_STAT_PASS_NO_BYPASS);
	/* frames for the bridge itself (KubeVirt's DHCP server) or another port stay on the bridge */
	if (!mac_equal(f.eth->dest, ep->gateway_mac) || !mac_equal(f.eth->source, ep->guest_mac))
		return next(VMPEER_STAT_PASS_NOT_GATEWAY);

	/* What eth_type_trans() on the host veth would say. The guest port
	 * classified the frame PACKET_OTHERHOST (not its MAC), and before 6.15
	 * bpf_redirect_peer() keeps that, so ip_rcv() would drop it. */
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
	ep->bypassed_out++;
	next(VMPEER_STAT_BYPASSED_OUT);
	return bpf_redirect_peer(ep->uplink_ifindex, 0);
}

/*
 * The kernel's IPv4 forwarding decrement (RFC 1624): TTL is the high byte of
 * its 16-bit word, so the word drops by 0x0100 and the checksum rises by it.
 */
static __always_inline void ipv4_decrement_ttl(struct iphdr *ip)
{
	__u32 sum = (__u32)ip->check + bpf_htons(0x0100);

	ip->check = (__u16)(sum + (sum >= 0xffff));
	ip->ttl--;
}

/*
 * A TCP SYN, or a packet whose transport header redirect does not look for
 * (IPv6 extension headers): the first packet of a flow. Peer-redirecting it
 * would skip the programs at the host veth's egress, where a CNI enforces the
 * workload's ingress policy (Calico #13356): it takes the kernel path, and
 * with it that policy and conntrack's first sight of the flow.
 */
static __always_inline int new_flow(const struct frame *f, void *data_end)
{
	const __u8 *tcp;

	if (f->proto == bpf_htons(ETH_P_IP)) {
		if (f->ip4->protocol != IPPROTO_TCP)
			return 0;
		tcp = (const __u8 *)f->ip4 + ((f->ip4->ihl & 0xf) << 2);
	} else {
		__u8 next = f->ip6->nexthdr;

		if (next != IPPROTO_TCP)
			return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_FRAGMENT ||
			       next == IPPROTO_DSTOPTS || next == IPPROTO_AH || next == 135 /* mobility */;
		tcp = (const __u8 *)(f->ip6 + 1);
	}
	/* a TCP header too short to show its flags: the kernel decides */
	if ((void *)(tcp + 14) > data_end)
		return 1;
	return tcp[13] & 0x02; /* SYN */
}

SEC("tc")
int redirect(struct __sk_buff *skb)
{
	struct vmpeer_endpoint *ep;
	struct frame f;
	enum vmpeer_stat reason;
	__u32 csum_delta = 0;

	reason = parse_frame(skb, &f, KEY_DEST);
	if (reason != VMPEER_STAT_MAX)
		return next(reason);
	if (skb->pkt_type == PACKET_OTHERHOST)
		return next(VMPEER_STAT_PASS_NOT_HOST);

	ep = find_endpoint(&f);
	if (!ep)
		return next(VMPEER_STAT_PASS_UNKNOWN);
	if (!(ep->flags & VMPEER_EP_REDIRECT) || !ep->host_ifindex) {
		ep->passed++;
		return next(VMPEER_STAT_PASS_NO_REDIRECT);
	}

	if (f.proto == bpf_htons(ETH_P_IP)) {
		/* fragments are left to the kernel: it may need to reassemble */
		if (f.ip4->frag_off & bpf_htons(0x3fff)) {
			ep->passed++;
			return next(VMPEER_STAT_PASS_FRAGMENT);
		}
		/* ... and expiring packets, so that it answers time-exceeded */
		if (f.ip4->ttl <= 1) {
			ep->passed++;
			return next(VMPEER_STAT_PASS_TTL);
		}
	} else if (f.ip6->hop_limit <= 1) {
		ep->passed++;
		return next(VMPEER_STAT_PASS_TTL);
	}
	if (new_flow(&f, (void *)(long)skb->data_end)) {
		ep->passed++;
		return next(VMPEER_STAT_PASS_NEW_FLOW);
	}

	if (f.proto == bpf_htons(ETH_P_IP)) {
		ipv4_decrement_ttl(f.ip4);
	} else {
		/* IPv6 has no header checksum to absorb the change, but a
		 * CHECKSUM_COMPLETE skb->csum (what real NICs deliver) covers the
		 * hop limit: it moves by the change of its 16-bit word (nexthdr,
		 * hop_limit; an even offset from the network header, where the
		 * sum starts). One's complement: new - old == ~old + new. */
		__u16 *word = (__u16 *)&f.ip6->nexthdr;
		__u16 old = *word;

		f.ip6->hop_limit--;
		csum_delta = (__u32)(__u16)~old + *word;
	}

	/* pkt_type is left alone: bpf_redirect_peer() resets it to PACKET_HOST
	 * since 6.15, and the pod's `fixup` classifies the frame on every kernel */
	__builtin_memcpy(f.eth->dest, ep->guest_mac, 2 * ETH_ALEN);
	ep->redirected++;
	next(VMPEER_STAT_REDIRECTED);
	/* adds to skb->csum only for CHECKSUM_COMPLETE, else returns -ENOTSUPP
	 * and changes nothing (net/core/filter.c, bpf_csum_update) */
	if (csum_delta)
		bpf_csum_update(skb, csum_delta);
	return bpf_redirect_peer(ep->host_ifindex, 0);
}
