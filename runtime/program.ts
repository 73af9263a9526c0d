// Entry point of the user program (dist/program.js), started by the kernel with its main channel in the FIFOs
// named by TSNB_PIPE / TSNB_PIPE_BACK (+ TSNB_PIPE_TOKEN) and fd 4 = interrupt channel. The URLs of the
// sibling bundles are computed here because only the entry module's import.meta.url is guaranteed to be
// dist/program.js after bundling.

import { fstatSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { openChannelFifos, type ChannelFifos } from "./channel.js";
import { Runtime } from "./runtime.js";

const distDir = dirname(fileURLToPath(import.meta.url));
const metaResolve = (import.meta as { resolve?: (specifier: string, parent?: string) => string }).resolve;

function channelProblem(fd: number): string | null {
  try {
    const stat = fstatSync(fd);
    return stat.isSocket() || stat.isFIFO() ? null : `fd ${fd} is not a pipe`;
  } catch (err) {
    return `fd ${fd}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
}

function openChannels(): ChannelFifos {
  const fifos = openChannelFifos(process.env);
  const problem = typeof fifos === "string" ? fifos : channelProblem(4);
  if (problem === null && typeof fifos !== "string") return fifos;
  process.stderr.write(
    `tsnb: dist/program.js runs cells for the tsnb kernel, which starts it with its channel in TSNB_PIPE/TSNB_PIPE_BACK and interrupts on fd 4 (${problem}). Start a notebook with the "TypeScript (tsnb)" kernel instead.\n`,
  );
  process.exit(2);
}

const channel = openChannels();

new Runtime({
  channel,
  interruptFd: 4,
  tsnbUrl: new URL("./tsnb.js", import.meta.url).href,
  resolve: metaResolve ? (specifier, parent) => metaResolve.call(import.meta, specifier, parent) : undefined,
  internalPrefixes: [distDir + "/", new URL("./", import.meta.url).href],
});
