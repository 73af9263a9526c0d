// Bundles the kernel, the user-program runtime and the browser shim into dist/ with esbuild.
// Typechecking is separate (`npm run typecheck`): esbuild only strips types, which keeps builds ~100 ms.
import { build, transform } from "esbuild";
import { readFile } from "node:fs/promises";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
mkdirSync(join(root, "dist"), { recursive: true });

const node = {
  platform: "node",
  target: "node20",
  format: "esm",
  bundle: true,
  sourcemap: "linked",
  logLevel: "warning",
  // Native or self-locating packages stay outside the bundle.
  external: ["esbuild"],
  // Each process keeps its bundles' source text on the heap for its whole life (V8 compiles functions lazily
  // from it). Whitespace and syntax are minified, names are not, so stack traces stay readable; acorn is
  // bundled because its own file holds non-Latin-1 characters and so sat on the program's heap as a 458 KB
  // two-byte string (esbuild's output is ASCII). Program RSS 53.4 -> 52.5 MB.
  minifyWhitespace: true,
  minifySyntax: true,
  // Bundled CommonJS dependencies may call require(); give ESM output one.
  banner: { js: "import { createRequire as __tsnbCreateRequire } from 'node:module'; const require = __tsnbCreateRequire(import.meta.url);" },
};

const entries = [
  { in: "kernel/cli.ts", out: "cli" },
  { in: "runtime/program.ts", out: "program" },
  { in: "runtime/tsnb/index.ts", out: "tsnb" },
].filter((e) => existsSync(join(root, e.in)));

const programBuild = await build({
  ...node,
  metafile: true,
  entryPoints: entries.map((e) => ({ in: join(root, e.in), out: e.out })),
  outdir: join(root, "dist"),
  // program.js and tsnb.js must share one instance of the tsnb library state, so shared code is split.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
});

// Chunk names carry content hashes, so stale ones from earlier builds pile up (and would ship in `npm pack`).
// dist/ is not wiped: a kernel started a moment ago by a running test may still be loading the previous
// build, so only chunks that are neither current nor fresh are removed.
const current = new Set(Object.keys(programBuild.metafile.outputs).map((p) => relative(root, join(process.cwd(), p))));
const chunksDir = join(root, "dist", "chunks");
// `npm pack` (prepack) passes --prune: nothing runs from this tree then, and stale chunks must not ship.
const staleAfterMs = process.argv.includes("--prune") ? 0 : 10 * 60 * 1000;
for (const name of existsSync(chunksDir) ? readdirSync(chunksDir) : []) {
  const path = join(chunksDir, name);
  const key = relative(root, path);
  const base = key.replace(/\.map$/, "");
  if (current.has(key) || current.has(base)) continue;
  if (Date.now() - statSync(path).mtimeMs > staleAfterMs) rmSync(path, { force: true });
}

// @lumino/widgets ships as one pre-bundled file that esbuild cannot tree-shake (all of it, menus, dock
// panels and command palette included, added 170 KB to the shim). The package also ships its TypeScript
// sources, so the shim bundles just the modules it imports from there. Those sources are compiled the way
// Lumino compiles them (assignment semantics for class fields), not with this project's ES2022 settings.
const LUMINO_WIDGETS = join(root, "node_modules/@lumino/widgets/src");
const luminoWidgetsFromSource = {
  name: "lumino-widgets-from-source",
  setup(b) {
    const used = { Widget: "widget", Panel: "panel", PanelLayout: "panellayout", TabBar: "tabbar" };
    b.onResolve({ filter: /^@lumino\/widgets$/ }, () => ({ path: "@lumino/widgets", namespace: "lumino-widgets" }));
    b.onLoad({ filter: /.*/, namespace: "lumino-widgets" }, () => ({
      contents: Object.entries(used).map(([name, file]) => `export { ${name} } from ${JSON.stringify(join(LUMINO_WIDGETS, `${file}.ts`))};`).join("\n"),
      resolveDir: root,
      loader: "js",
    }));
    b.onLoad({ filter: /[\\/]@lumino[\\/]widgets[\\/]src[\\/].*\.ts$/ }, async (args) => {
      const source = await readFile(args.path, "utf8");
      const out = await transform(source, { loader: "ts", sourcefile: args.path, target: "es2020", tsconfigRaw: { compilerOptions: { useDefineForClassFields: false } } });
      return { contents: out.code, loader: "js" };
    });
  },
};

if (existsSync(join(root, "frontend-shim/index.ts"))) {
  await build({
    plugins: [luminoWidgetsFromSource],
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
