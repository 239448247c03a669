#!/usr/bin/env python3
"""Creates a netkit pair with one RTM_NEWLINK, for tests (bookworm's iproute2 6.1 knows no netkit).

  netkit.py <name> <mac> <peer-name> <peer-mac> <peer-netns-path> [l2|l3]

The primary <name> is created in the calling netns, its peer in the netns at <peer-netns-path>,
both with the given MACs (L2 mode only: in L3 mode the kernel refuses an address). Default policy
PASS on both ends, no programs: a pod device as a CNI creates it before attaching its own.
Exits 0, or 1 with the kernel's errno name on stderr.

The message (include/uapi/linux/if_link.h; drivers/net/netkit.c, netkit_new_link()):
  ifinfomsg + IFLA_IFNAME, IFLA_ADDRESS,
  IFLA_LINKINFO { IFLA_INFO_KIND "netkit",
                  IFLA_INFO_DATA { IFLA_NETKIT_MODE u32,
                                   IFLA_NETKIT_PEER_INFO = ifinfomsg + IFLA_IFNAME, IFLA_ADDRESS, IFLA_NET_NS_FD } }
"""
import errno
import os
import socket
import struct
import sys

RTM_NEWLINK = 16
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_NETKIT_PEER_INFO, IFLA_NETKIT_MODE = 1, 5
NETKIT_MODES = {"l2": 0, "l3": 1}  # enum netkit_mode: NETKIT_L2, NETKIT_L3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def ifinfomsg() -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)


def mac(text: str) -> bytes:
    return bytes(int(b, 16) for b in text.split(":"))


def main() -> int:
    name, address, peer, peer_address, peer_netns = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else "l2"
    fd = os.open(peer_netns, os.O_RDONLY)
    l2 = mode == "l2"
    peer_info = ifinfomsg() + attr(IFLA_IFNAME, peer.encode() + b"\0") + (attr(IFLA_ADDRESS, mac(peer_address)) if l2 else b"") + attr(IFLA_NET_NS_FD, struct.pack("=I", fd))
    data = attr(IFLA_NETKIT_MODE, struct.pack("=I", NETKIT_MODES[mode])) + attr(IFLA_NETKIT_PEER_INFO, peer_info)
    linkinfo = attr(IFLA_INFO_KIND, b"netkit\0") + attr(IFLA_INFO_DATA, data)
    body = ifinfomsg() + attr(IFLA_IFNAME, name.encode() + b"\0") + (attr(IFLA_ADDRESS, mac(address)) if l2 else b"") + attr(IFLA_LINKINFO, linkinfo)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, flags, 1, 0) + body

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    s.send(msg)
    reply = s.recv(65536)
    os.close(fd)
    _, kind = struct.unpack_from("=IH", reply)
    code = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
    if code == 0:
        return 0
    print(f"netkit {name}: {errno.errorcode.get(-code, str(-code))} ({os.strerror(-code)})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
