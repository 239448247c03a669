/**
 * A plain (non-VM) pod that comes and goes while a lab runs, with the pod
 * IP it is given: what a node sees when the IPAM hands an address that
 * belonged to a VM to an ordinary pod. Wired as topology.ts wires the lab's
 * plain pods (the CNI's veth, /32 route, proxy ARP; eth0 with the IP and a
 * default route via 169.254.1.1). Netns <lab name>-p<n>, adopted by the lab.
 */
import { CALICO_HOST_MAC, GATEWAY_IP, POD_IF, caliName, randomMac } from './addressing.js';
import { ipBatch, run, sysctls } from './exec.js';
import type { Lab } from './lab.js';
import { deleteNetns, netnsRef } from './netns.js';
import type { PlainPod } from './topology.js';

let seq = 0;

async function iface(nsName: string, name: string): Promise<{ name: string; ifindex: number; mac: string }> {
  const { stdout } = await run('ip', ['-j', '-n', nsName, 'link', 'show', 'dev', name]);
  const [l] = JSON.parse(stdout) as Array<{ ifindex: number; address: string }>;
  return { name, ifindex: l!.ifindex, mac: l!.address };
}

/** Creates a plain pod holding `ip`; the CNI's fast path routes it too when the lab's emulator is attached. */
export async function addPlainPod(lab: Lab, ip: string): Promise<PlainPod> {
  const name = `${lab.name}-p${seq++}`;
  const podNs = netnsRef(name);
  const node = lab.node.ns;
  const cali = caliName();
  await ipBatch([
    `netns add ${name}`,
    `link add ${cali} netns ${node.name} address ${CALICO_HOST_MAC} type veth peer name ${POD_IF} netns ${name} address ${randomMac(0x0a)}`,
  ]);
  lab.adopt(podNs);
  try {
    await sysctls(podNs.path, [
      ['net.ipv6.conf.all.disable_ipv6', 1],
      ['net.ipv6.conf.default.disable_ipv6', 1],
    ]);
    await ipBatch(
      ['link set lo up', `link set ${POD_IF} up`, `addr add ${ip}/32 dev ${POD_IF}`, `route add ${GATEWAY_IP} dev ${POD_IF} scope link`, `route add default via ${GATEWAY_IP} dev ${POD_IF}`],
      name,
    );
    await ipBatch([`link set ${cali} up`, `route replace ${ip}/32 dev ${cali} scope link`], node.name);
    await sysctls(node.path, [
      [`net.ipv4.conf.${cali}.proxy_arp`, 1],
      [`net.ipv4.neigh.${cali}.proxy_delay`, 0],
    ]);
    const pod: PlainPod = { label: name, index: -1, ns: podNs, podNs, ip, podIp: ip, iface: await iface(name, POD_IF), hostVeth: await iface(node.name, cali) };
    lab.emulator.setRoute(ip, pod.hostVeth.ifindex);
    if (lab.emulatorAttached) lab.emulator.attach({ netns: node.path, ifname: cali });
    return pod;
  } catch (e) {
    await removePlainPod(lab, { podNs, hostVeth: { name: cali } } as PlainPod);
    throw e;
  }
}

/** Deletes the pod as the container runtime does; its veth and route go with its netns. */
export async function removePlainPod(lab: Lab, pod: PlainPod): Promise<void> {
  if (lab.emulatorAttached) lab.emulator.detach({ netns: lab.node.ns.path, ifname: pod.hostVeth.name });
  await deleteNetns([pod.podNs.name]);
  lab.disown(pod.podNs);
}
