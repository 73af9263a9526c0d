// Module loading for cells. Code evaluated through the inspector cannot use `import()` itself (V8 has no
// host callback for it there), so the compiler rewrites imports into calls of `importFromCell`, which
// resolves specifiers from the notebook directory (the current working directory) and imports them from
// this module. "tsnb" always means the runtime's own library instance.

import { createRequire, isBuiltin } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export class ModuleResolutionError extends Error {
  override readonly name = "ModuleResolutionError";
}

export interface ImporterOptions {
  /** URL of dist/tsnb.js. */
  tsnbUrl: string;
  /** import.meta.resolve of the runtime's entry module (needs --experimental-import-meta-resolve for a parent). */
  resolve: ((specifier: string, parent?: string) => string) | undefined;
  /** Called before resolving a relative or absolute path (the TypeScript file loader is set up lazily). */
  beforeFileImport(): void;
}

export interface Importer {
  importFromCell(specifier: unknown, options?: { with?: Record<string, string> }): Promise<Record<string, unknown>>;
  /** Picks named imports, falling back to properties of a CommonJS default export. */
  named(namespace: Record<string, unknown>, names: readonly string[]): Record<string, unknown>;
  require: NodeJS.Require;
  importMeta(): { url: string; dirname: string; filename: string; resolve(specifier: string): string };
}

function notebookParent(): string {
  return pathToFileURL(join(process.cwd(), "__tsnb_cell__.ts")).href;
}

export function createImporter(options: ImporterOptions): Importer {
  const requireFromCwd = () => createRequire(join(process.cwd(), "__tsnb_cell__.js"));

  const resolve = (specifier: string): string => {
    if (specifier === "tsnb") return options.tsnbUrl;
    if (isBuiltin(specifier)) return specifier.startsWith("node:") ? specifier : `node:${specifier}`;
    if (specifier.startsWith("data:")) return specifier;
    if (/^(?:\.{1,2}\/|\/|file:)/.test(specifier)) options.beforeFileImport();
    if (specifier.startsWith("file:")) return specifier;
    const errors: string[] = [];
    if (options.resolve) {
      try {
        return options.resolve(specifier, notebookParent());
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
    // CommonJS resolution finds packages that only declare "require" conditions or "main".
    try {
      return pathToFileURL(requireFromCwd().resolve(specifier)).href;
    } catch (err) {
      errors.push(err instanceof Error ? err.message.split("\n")[0]! : String(err));
    }
    throw new ModuleResolutionError(`Cannot find module "${specifier}" from ${process.cwd()}: ${errors.join("; ")}`);
  };

  const importFromCell: Importer["importFromCell"] = async (specifier, importOptions) => {
    if (typeof specifier !== "string") throw new TypeError(`import() expects a string specifier, got ${typeof specifier}`);
    const url = resolve(specifier);
    const attributes = importOptions?.with ?? {};
    const keys = Object.keys(attributes);
    if (keys.length === 0) return (await import(url)) as Record<string, unknown>;
    // The only import attribute Node supports is `type: "json"`.
    if (keys.length === 1 && attributes.type === "json") return (await import(url, { with: { type: "json" } })) as Record<string, unknown>;
    throw new TypeError(`unsupported import attributes ${JSON.stringify(attributes)} for "${specifier}"`);
  };

  const named: Importer["named"] = (namespace, names) => {
    const out: Record<string, unknown> = {};
    const fallback = namespace.default;
    for (const name of names) {
      if (name === "default") {
        // A transpiled ES module compiled to CommonJS keeps its real default under `.default`.
        const isTranspiled =
          typeof fallback === "object" && fallback !== null && (fallback as { __esModule?: unknown }).__esModule === true && "default" in fallback;
        out.default = isTranspiled ? (fallback as { default: unknown }).default : fallback;
      } else if (name in namespace) {
        out[name] = namespace[name];
      } else if ((typeof fallback === "object" || typeof fallback === "function") && fallback !== null) {
        out[name] = (fallback as Record<string, unknown>)[name];
      } else {
        out[name] = undefined;
      }
    }
    return out;
  };

  const requireFn = ((id: string) => {
    if (id === "tsnb") throw new ModuleResolutionError('require("tsnb") is not supported: use import { ... } from "tsnb" (or the globals)');
    return requireFromCwd()(id);
  }) as NodeJS.Require;
  requireFn.resolve = ((id: string, opts?: { paths?: string[] }) => requireFromCwd().resolve(id, opts)) as NodeJS.RequireResolve;
  requireFn.resolve.paths = (request: string) => requireFromCwd().resolve.paths(request);
  requireFn.cache = createRequire(import.meta.url).cache;
  requireFn.main = undefined;
  requireFn.extensions = createRequire(import.meta.url).extensions;

  const importMeta = () => {
    const filename = join(process.cwd(), "__tsnb_cell__.ts");
    return { url: pathToFileURL(filename).href, dirname: process.cwd(), filename, resolve };
  };

  return { importFromCell, named, require: requireFn, importMeta };
}
