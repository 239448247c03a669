/** The addresses the BPF_PROG_TEST_RUN tests and the per-packet benchmark put in their frames. */
export const GUEST4 = '198.18.1.10';
export const GUEST6 = '2001:db8::a';
export const GUEST_MAC = '52:54:00:00:00:0a';
export const GATEWAY_MAC = 'ee:ee:ee:ee:ee:ee';
export const CLIENT4 = '198.18.0.2';
export const CLIENT6 = '2001:db8:1::2';
export const CLIENT_MAC = '02:00:00:00:00:02';
/** Where a peer redirect leaves the destination MAC: the node's uplink MAC. */
export const NODE_MAC = '02:00:00:00:00:01';
/** BPF_PROG_TEST_RUN receives frames on loopback, whose MAC is all zeros: frames to it are PACKET_HOST. */
export const HOST_MAC = '00:00:00:00:00:00';
export const HOST_IFINDEX = 4242;
