// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test-only: records, per IPv4 ID, the set of skb->pkt_type values the frames
 * with that ID arrived with (bit 1 << pkt_type), so a test can see how frames
 * are classified at a hook (BPF_PROG_TEST_RUN cannot show pkt_type). Attach
 * it after the program under test.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);   /* IPv4 ID, host order */
	__type(value, __u32); /* bit 1 << pkt_type for every arrival */
} pkt_types SEC(".maps");

SEC("tc")
int probe(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 seen = 1U << (skb->pkt_type & 31), *old;
	__u16 id;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	id = bpf_ntohs(ip->id);
	old = bpf_map_lookup_elem(&pkt_types, &id);
	if (old)
		seen |= *old;
	bpf_map_update_elem(&pkt_types, &id, &seen, BPF_ANY);
	return TC_ACT_UNSPEC;
}
