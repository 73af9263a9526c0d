// Bundles the kernel, the user-program runtime and the browser shim into dist/ with esbuild.
// Typechecking is separate (`npm run typecheck`): esbuild only strips types, which keeps builds ~100 ms.
import { build } from "esbuild";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Chunk names carry content hashes: stale ones from earlier builds would otherwise ship in `npm pack`.
rmSync(join(root, "dist"), { recursive: true, force: true });
mkdirSync(join(root, "dist"), { recursive: true });

const node = {
  platform: "node",
  target: "node20",
  format: "esm",
  bundle: true,
  sourcemap: "linked",
  logLevel: "warning",
  // Native or self-locating packages stay outside the bundle.
  external: ["zeromq", "esbuild", "acorn"],
  // Bundled CommonJS dependencies may call require(); give ESM output one.
  banner: { js: "import { createRequire as __tsnbCreateRequire } from 'node:module'; const require = __tsnbCreateRequire(import.meta.url);" },
};

const entries = [
  { in: "kernel/cli.ts", out: "cli" },
  { in: "runtime/program.ts", out: "program" },
  { in: "runtime/interrupter.ts", out: "interrupter" },
  { in: "runtime/tsnb/index.ts", out: "tsnb" },
].filter((e) => existsSync(join(root, e.in)));

await build({
  ...node,
  entryPoints: entries.map((e) => ({ in: join(root, e.in), out: e.out })),
  outdir: join(root, "dist"),
  // program.js and tsnb.js must share one instance of the tsnb library state, so shared code is split.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
});

if (existsSync(join(root, "frontend-shim/index.ts"))) {
  await build({
    entryPoints: [join(root, "frontend-shim/index.ts")],
    outfile: join(root, "dist/shim.js"),
    bundle: true,
    platform: "browser",
    format: "iife",
    target: "es2020",
    minify: true,
    logLevel: "warning",
  });
}
