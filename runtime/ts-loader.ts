// Lets cells import TypeScript files from the notebook directory (`import { f } from "./util.ts"`, or
// "./util.js" / "./util" when only util.ts exists, as tsc users write it). Node 20 cannot load .ts itself,
// so module customization hooks compile them with esbuild. The hooks run on Node's loader thread; they
// are registered from a data: URL because the runtime ships as a few fixed bundles, and they get
// esbuild's location through `initialize` (a data: module cannot resolve bare specifiers).

import { register } from "node:module";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const HOOKS = String.raw`
let transform;
let tsnbUrl;
export async function initialize(data) {
  tsnbUrl = data.tsnbUrl;
  ({ transform } = await import(data.esbuildUrl));
}
const TS = /\.(?:ts|mts|cts)$/;
function candidates(specifier) {
  if (/\.(?:js|mjs|cjs)$/.test(specifier)) return [specifier.replace(/\.(m|c)?js$/, ".$1ts")];
  if (!/\.[A-Za-z0-9]+$/.test(specifier)) return [specifier + ".ts", specifier + "/index.ts"];
  return [];
}
export async function resolve(specifier, context, nextResolve) {
  // Files next to the notebook share the runtime's one tsnb instance, installed or not.
  if (specifier === "tsnb") return { url: tsnbUrl, shortCircuit: true };
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const relative = specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("/") || specifier.startsWith("file:");
    if (!relative || err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
    for (const candidate of candidates(specifier)) {
      try {
        return await nextResolve(candidate, context);
      } catch (inner) {
        if (inner?.code !== "ERR_MODULE_NOT_FOUND") throw inner;
      }
    }
    throw err;
  }
}
export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !TS.test(new URL(url).pathname) || url.includes("/node_modules/")) return nextLoad(url, context);
  const { source } = await nextLoad(url, { ...context, format: "module" });
  const text = typeof source === "string" ? source : new TextDecoder().decode(source);
  const result = await transform(text, {
    loader: "ts",
    format: url.endsWith(".cts") ? "cjs" : "esm",
    target: "es2022",
    supported: { "import-attributes": true },
    sourcemap: "inline",
    sourcefile: url,
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true, useDefineForClassFields: true } },
  });
  return { format: url.endsWith(".cts") ? "commonjs" : "module", source: result.code, shortCircuit: true };
}
`;

/** Registers the hooks; returns a note when that is not possible (then .ts imports fail as in plain Node). */
export function registerTypeScriptLoader(options: { tsnbUrl: string }): string | null {
  try {
    const esbuildUrl = pathToFileURL(createRequire(import.meta.url).resolve("esbuild")).href;
    register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, { data: { esbuildUrl, tsnbUrl: options.tsnbUrl } });
    return null;
  } catch (err) {
    return `TypeScript file imports are unavailable: ${err instanceof Error ? err.message : String(err)}`;
  }
}
