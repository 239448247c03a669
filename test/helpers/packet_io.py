#!/usr/bin/env python3
"""Raw Ethernet frames on an interface, for tests (Node.js has no AF_PACKET sockets).

  packet_io.py send <ifname> <hex> [<hex> ...]   send each frame as is
  packet_io.py recv <ifname> <seconds>           print every frame received, one hex line each,
                                                 until the time is up or SIGTERM
"""
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main() -> int:
    cmd, ifname = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    if cmd == "send":
        for frame in sys.argv[3:]:
            s.send(bytes.fromhex(frame))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + float(sys.argv[3])
    print("ready", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        if select.select([s], [], [], left)[0]:
            frame, addr = s.recvfrom(65535)
            if addr[2] != PACKET_OUTGOING:
                print(frame.hex(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
