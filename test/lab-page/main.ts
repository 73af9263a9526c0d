// A JupyterLab-style page for the comms tests: JupyterLab's own OutputArea and RenderMimeRegistry (with the
// javascript extension's renderer, as JupyterLab ships it) executing cells against a real Jupyter server
// through @jupyterlab/services. The shim then boots exactly as it would under JupyterLab: from an
// application/javascript output rendered by that extension, finding the server in
// <script id="jupyter-config-data">. Bundled by esbuild in test/comms-lab.test.ts; runs only in the browser.

import type { ISessionContext } from "@jupyterlab/apputils";
import { rendererFactory as javascriptRendererFactory } from "@jupyterlab/javascript-extension";
import { OutputArea, OutputAreaModel } from "@jupyterlab/outputarea";
import { RenderMimeRegistry, standardRendererFactories } from "@jupyterlab/rendermime";
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { KernelManager, ServerConnection, SessionManager } from "@jupyterlab/services";
import { Widget } from "@lumino/widgets";

/** What the test reads and calls on `window`. */
export interface LabPageGlobals {
  /** Executes code in the session's kernel through OutputArea.execute; resolves with the reply's status. */
  runCell(code: string): Promise<string>;
  /** Text of the output area (what the user sees). */
  outputText(): string;
  /** How many outputs the javascript extension's renderer rendered: proof the shim came in that way. */
  jsRenders: number;
  /** Set once the session's kernel is connected; its id. */
  labKernelId?: string;
  /** Set if booting the page failed. */
  labError?: string;
}

interface ConfigData {
  baseUrl: string;
  wsUrl: string;
  token: string;
  kernelName: string;
}

/**
 * The rank the extension's default export declares and JupyterLab registers it at. Not read from that export:
 * the package has no "type": "module", so TypeScript (NodeNext) and esbuild disagree on what its default is.
 */
const JAVASCRIPT_EXTENSION_RANK = 0;

function readConfig(): ConfigData {
  const el = document.getElementById("jupyter-config-data");
  if (el?.textContent == null) throw new Error("the page has no jupyter-config-data");
  return JSON.parse(el.textContent) as ConfigData;
}

async function boot(g: LabPageGlobals): Promise<void> {
  const config = readConfig();
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: config.baseUrl,
    wsUrl: config.wsUrl,
    token: config.token,
    // Same host, another port: services would not put the token on the websocket URL by itself.
    appendToken: true,
    // The page is served from another origin than the server; the token authenticates, no cookies needed.
    init: { cache: "no-store", credentials: "omit" },
  });
  const kernelManager = new KernelManager({ serverSettings });
  const sessionManager = new SessionManager({ kernelManager, serverSettings });
  await sessionManager.ready;
  const session = await sessionManager.startNew({
    path: "lab-page.ipynb",
    name: "lab-page.ipynb",
    type: "notebook",
    kernel: { name: config.kernelName },
  });
  const kernel = session.kernel;
  if (kernel === null) throw new Error("the session started without a kernel");
  await kernel.info;

  // The extension's renderer (rank 0) is what JupyterLab uses for application/javascript; counting its
  // renderers lets the test tell "the shim booted through it" from "the shim booted some other way".
  const jsFactory: IRenderMime.IRendererFactory = {
    ...javascriptRendererFactory,
    createRenderer: (options) => {
      g.jsRenders += 1;
      return javascriptRendererFactory.createRenderer(options);
    },
  };
  const rendermime = new RenderMimeRegistry({ initialFactories: standardRendererFactories });
  // At the extension's own rank, as JupyterLab registers mime extensions; its factory has no defaultRank, so
  // without the rank it would sit at 100, behind text/html, and the script would run from the HTML output.
  rendermime.addFactory(jsFactory, JAVASCRIPT_EXTENSION_RANK);
  // Trusted, as a cell the user just ran is in JupyterLab: untrusted javascript would show a "Run" button.
  const model = new OutputAreaModel({ trusted: true });
  const area = new OutputArea({ model, rendermime });
  area.id = "lab-output";
  Widget.attach(area, document.body);
  // OutputArea.execute reads only `session.kernel` of the session context; JupyterLab's SessionContext
  // (dialogs, kernel pickers) adds nothing this page needs.
  const sessionContext = { session } as unknown as ISessionContext;

  g.runCell = async (code: string) => {
    const reply = await OutputArea.execute(code, area, sessionContext);
    return reply?.content.status ?? "no reply";
  };
  g.outputText = () => area.node.innerText;
  g.labKernelId = kernel.id;
}

const globals = window as unknown as LabPageGlobals;
globals.jsRenders = 0;
boot(globals).catch((err: unknown) => {
  globals.labError = err instanceof Error ? `${err.message}\n${err.stack ?? ""}` : String(err);
  console.error("lab page failed to boot", err);
});
