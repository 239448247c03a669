/** A loaded BPF program: run it on a frame, or attach it to a tc hook. */
import type { Native, NativeProgram, TestRunRequest, TestRunResult } from '../native.js';
import { fromNative } from '../errors.js';
import { attach, type AttachOptions, type HookTarget, type Link } from './link.js';

export class Program {
  readonly name: string;
  readonly fd: number;
  readonly id: number;
  readonly insnCount: number;

  constructor(private readonly n: Native, info: NativeProgram) {
    this.name = info.name;
    this.fd = info.fd;
    this.id = info.id;
    this.insnCount = info.insnCount;
  }

  /** BPF_PROG_TEST_RUN: runs the program on `data` (an Ethernet frame for tc programs). */
  testRun(request: TestRunRequest): TestRunResult {
    try {
      return this.n.testRun(this.fd, request);
    } catch (e) {
      throw fromNative(e, `running ${this.name}`);
    }
  }

  attach(target: HookTarget, options: AttachOptions = {}): Link {
    return attach(this.n, this, target, options);
  }
}
