/**
 * What vmpeer's prebuilt addon needs from the system, and what to say when it
 * cannot load: the install script and the first require of the addon both
 * explain a load failure with explainLoadFailure() instead of a dlopen or
 * node-gyp trace. The floor is the prebuild's own: built on Debian 12, it
 * links glibc symbols up to GLIBC_2.34 and the soname libbpf.so.1.
 */
export const MIN_GLIBC = '2.34';

/** The addon cannot load here: exit 2, one line (the CLI reports it like a UsageError). */
export class AddonLoadError extends Error {
  readonly exitCode = 2;
  override name = 'AddonLoadError';
}

export const SUPPORT_FLOOR = `vmpeer supports Linux x86_64 with glibc >= ${MIN_GLIBC} and libbpf 1.x (libbpf.so.1), e.g. Debian 12 or newer, Ubuntu 24.04 or newer, RHEL 9 or newer; kernel >= 5.10`;

/** The running C library's version ('' when not glibc). */
export function glibcVersion(): string {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ?? '';
}

const older = (a: string, b: string) => {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
  return x[0]! < y[0]! || (x[0] === y[0] && x[1]! < y[1]!);
};

/** One line: what failed, what to install or do, and the support floor. */
export function explainLoadFailure(error: unknown, glibc = glibcVersion()): string {
  const text = String((error as Error)?.message ?? error);
  const first = text.split('\n')[0]!;
  let what: string;
  const needs = /version [`']GLIBC_([\d.]+)' not found/.exec(text);
  if (glibc !== '' && older(glibc, MIN_GLIBC)) {
    // checked first: the loader reports whichever library it misses first, often libbpf.so.1
    what = `this system's glibc is ${glibc}, older than the ${MIN_GLIBC} the addon needs (${first})`;
  } else if (/libbpf\.so\.1/.test(text)) {
    what = 'libbpf.so.1 is missing: install libbpf1 (Debian/Ubuntu: apt-get install libbpf1; Fedora/RHEL: dnf install libbpf)';
  } else if (needs) {
    what = `this system's C library is too old: the addon needs glibc ${needs[1]} (ldd --version shows yours)`;
  } else if (/GLIBCXX_[\d.]+' not found/.test(text)) {
    what = "this system's libstdc++ is too old (the addon needs the one of GCC 11 or newer)";
  } else if (/No native build was found/.test(text)) {
    what = `no prebuilt addon for this system (${first.replace(/^No native build was found for /, '')})`;
  } else {
    what = first;
  }
  return `vmpeer's native addon cannot be loaded: ${what}. ${SUPPORT_FLOOR}; elsewhere build it from source (libbpf-dev, g++, make, python3, then npm rebuild vmpeer --build-from-source)`;
}
