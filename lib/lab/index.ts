/** The lab: a throwaway topology in network namespaces reproducing the bridged-VM peer-redirect fault. */
export * from './addressing.js';
export { Lab } from './lab.js';
export type { LabOptions } from './lab.js';
export { DEFAULT_PREFIX, labName, labOwnerPid } from './lab-names.js';
export { DEFAULT_FLOW_TIMEOUT_MS } from './lab-emulator.js';
export type { LabVm } from './lab-guests.js';
export type { EchoOutcome, TransferOutcome, TrafficOptions } from './lab-traffic.js';
export type { Endpoint, ClientHost, NodeHost, PlainPod, VmPod, Iface } from './topology.js';
export type { NetnsRef } from './netns.js';
export { CniEmulator, EMULATOR_OBJECT } from './emulator.js';
export type { EmulatorStats, EmulatorConfig } from './emulator.js';
export { Capture, parsePcap } from './capture.js';
export type { CapturedFrame } from './capture.js';
export type { PingOptions, PingResult } from './ping.js';
export { QemuGuest } from './qemu.js';
export { ECHO_PORT, SINK_PORT } from './agent-main.js';
