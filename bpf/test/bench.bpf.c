// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark harness for BPF_PROG_TEST_RUN. With `repeat`, the kernel runs a
 * program again and again on the same skb, so a program that rewrites the
 * frame would see its own output from the second run on. `bench` therefore
 * restores the frame's head and pkt_type from `original` and then tail-calls
 * the program under test (slot 0 of `target`): the shipped `fixup` or
 * `redirect`, or `pass` for the baseline. Restore and tail call cost the same
 * on both sides.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define HEAD 64 /* bytes restored: Ethernet + IPv6 header + a little */

struct head {
	__u64 words[HEAD / 8];
};

struct original {
	struct head head;
	__u32 pkt_type;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct original);
} original SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("tc")
int bench(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct head *h = data;
	__u32 zero = 0;
	struct original *o = bpf_map_lookup_elem(&original, &zero);

	if (!o || (void *)(h + 1) > data_end)
		return TC_ACT_SHOT;
	*h = o->head;
	bpf_skb_change_type(skb, o->pkt_type);
	bpf_tail_call(skb, &target, 0);
	return TC_ACT_SHOT;
}

SEC("tc")
int pass(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}
