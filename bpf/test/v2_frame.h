/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* FROZEN TEST FIXTURE: bpf/frame.h of layout 2 (commit 95881e9); see v2_vmpeer.bpf.c. */
/* Parsing an Ethernet frame far enough to find the guest it is for. */
#ifndef VMPEER_V2_FRAME_H
#define VMPEER_V2_FRAME_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>

#include "v2_vmpeer.h"

/* struct ethhdr is packed, which makes clang load it byte by byte. */
struct eth {
	__u16 dest[3];
	__u16 source[3];
	__be16 proto;
};

struct frame {
	struct eth *eth;
	__be16 proto;        /* ETH_P_IP or ETH_P_IPV6, network order */
	struct iphdr *ip4;   /* valid for ETH_P_IP */
	struct ipv6hdr *ip6; /* valid for ETH_P_IPV6 */
	union {
		struct vmpeer_key key;
		__u32 words[4];
	};
};

/* Which address of the frame becomes its key: the guest it goes to, or the guest it comes from. */
enum frame_key { KEY_DEST, KEY_SOURCE };

/*
 * Fills `f` for a unicast IPv4 or IPv6 frame and returns VMPEER_STAT_MAX;
 * otherwise returns the reason the frame is not ours to touch.
 */
static __always_inline enum vmpeer_stat parse_frame(struct __sk_buff *skb, struct frame *f, enum frame_key by)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct eth *eth = data;

	if ((void *)(eth + 1) > data_end)
		return VMPEER_STAT_PASS_MALFORMED;
	/* __netif_receive_skb_core() pulls a VLAN tag out of the frame into
	 * skb metadata before tc ingress runs (skb_vlan_untag(), whatever the
	 * device's offloads), so a tagged frame shows its inner EtherType here:
	 * it belongs to another VLAN, not to the guest's network */
	if (skb->vlan_present)
		return VMPEER_STAT_PASS_NOT_IP;
	if (*(__u8 *)eth->dest & 1)
		return VMPEER_STAT_PASS_NOT_UNICAST;
	f->eth = eth;
	f->proto = eth->proto;

	if (eth->proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return VMPEER_STAT_PASS_MALFORMED;
		f->ip4 = ip;
		f->words[0] = 0;
		f->words[1] = 0;
		f->words[2] = bpf_htonl(0x0000ffff);
		f->words[3] = by == KEY_SOURCE ? ip->saddr : ip->daddr;
		return VMPEER_STAT_MAX;
	}
	if (eth->proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return VMPEER_STAT_PASS_MALFORMED;
		f->ip6 = ip6;
		__builtin_memcpy(f->words, by == KEY_SOURCE ? &ip6->saddr : &ip6->daddr, sizeof(f->words));
		return VMPEER_STAT_MAX;
	}
	return VMPEER_STAT_PASS_NOT_IP;
}

static __always_inline int mac_equal(const __u16 *a, const __u8 *b)
{
	const __u16 *c = (const __u16 *)b;

	return ((a[0] ^ c[0]) | (a[1] ^ c[1]) | (a[2] ^ c[2])) == 0;
}

#endif /* VMPEER_V2_FRAME_H */
