/** vmpeer as a library: the loader, the dataplane, discovery and the CLI entry. */
export { native, packageRoot } from './native.js';
export type * from './native.js';
export { BpfObject } from './bpf/object.js';
export { BpfMap, BPF_ANY, BPF_EXIST, BPF_NOEXIST } from './bpf/map.js';
export { Program } from './bpf/program.js';
export { Link, attach, detach, resolveMode, TC_HANDLE, TC_PRIORITY, TC_PRIORITY_FIRST, type AttachOptions, type HookTarget } from './bpf/link.js';
export { Dataplane, DEFAULT_BPFFS_ROOT, OBJECT_PATH, netnsInode, type AttachmentRecord, type ProgramName } from './dataplane/dataplane.js';
export { decodeEndpoint, decodeStats, encodeEndpoint, encodeKey, type Endpoint, type EndpointCounters, type Stats } from './dataplane/codec.js';
export { STAT_NAMES, type StatName } from './dataplane/layout.js';
export { discoverVmInterfaces, GuestMacUnknownError, NotAVmPodError, type VmInterface } from './discovery/vm-pod.js';
export * from './errors.js';
export { parseIfname, parseIp, parseMac } from './validate.js';
export { main } from './cli/main.js';
