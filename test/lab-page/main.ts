// A JupyterLab-style page for the comms and widgets tests: JupyterLab's own OutputArea and RenderMimeRegistry (with the
// javascript extension's renderer, as JupyterLab ships it) executing cells against a real Jupyter server
// through @jupyterlab/services. The shim then boots exactly as it would under JupyterLab: from an
// application/javascript output rendered by that extension, finding the server in
// <script id="jupyter-config-data">. `?kernel=<id>` connects to a running kernel instead of starting a session
// (a second page, or the page reloaded); `restoreOutputs` renders saved outputs as a reopened notebook does.
// Bundled by esbuild (test/helpers/lab-page.ts); runs only in the browser.

import type { ISessionContext } from "@jupyterlab/apputils";
import { rendererFactory as javascriptRendererFactory } from "@jupyterlab/javascript-extension";
import { OutputArea, OutputAreaModel } from "@jupyterlab/outputarea";
import { RenderMimeRegistry, standardRendererFactories } from "@jupyterlab/rendermime";
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import type * as nbformat from "@jupyterlab/nbformat";
import { KernelManager, ServerConnection, SessionManager, type Kernel } from "@jupyterlab/services";
import { Widget } from "@lumino/widgets";
import { LegacyProtocolWebSocket } from "../../frontend-shim/websocket.js";

/** What the test reads and calls on `window`. */
export interface LabPageGlobals {
  /** Executes code in the session's kernel through OutputArea.execute; resolves with the reply's status. */
  runCell(code: string): Promise<string>;
  /** Text of the output area (what the user sees). */
  outputText(): string;
  /** The outputs as a notebook file stores them (what saving would write). */
  outputs(): nbformat.IOutput[];
  /** Replaces the outputs with saved ones, rendered as trusted (a reopened trusted notebook). */
  restoreOutputs(outputs: nbformat.IOutput[]): void;
  /**
   * Runs code without touching the output area (OutputArea.execute clears it, as re-running a cell does);
   * resolves with what it printed, or rejects with its error.
   */
  runQuiet(code: string): Promise<string>;
  /** Restarts the kernel through this page's own connection (JupyterLab's restart button). */
  restartKernel(): Promise<void>;
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
    // JupyterLab 4 runs on jupyter_server 2, which accepts services' subprotocol; this page talks to Notebook 6,
    // which does not, and services' retry under the same session id goes through the server's stale-connection
    // path (see frontend-shim/websocket.ts). Offering no subprotocol gives the page the connection Lab has.
    WebSocket: LegacyProtocolWebSocket,
  });
  const kernelManager = new KernelManager({ serverSettings });
  const existing = new URLSearchParams(location.search).get("kernel");
  let kernel: Kernel.IKernelConnection;
  if (existing !== null) {
    kernel = kernelManager.connectTo({ model: { id: existing, name: config.kernelName } });
  } else {
    const sessionManager = new SessionManager({ kernelManager, serverSettings });
    await sessionManager.ready;
    const session = await sessionManager.startNew({
      path: "lab-page.ipynb",
      name: "lab-page.ipynb",
      type: "notebook",
      kernel: { name: config.kernelName },
    });
    if (session.kernel === null) throw new Error("the session started without a kernel");
    kernel = session.kernel;
  }
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
  const sessionContext = { session: { kernel } } as unknown as ISessionContext;

  g.runCell = async (code: string) => {
    const reply = await OutputArea.execute(code, area, sessionContext);
    return reply?.content.status ?? "no reply";
  };
  g.outputText = () => area.node.innerText;
  g.outputs = () => model.toJSON();
  g.restoreOutputs = (outputs) => {
    model.clear();
    model.fromJSON(outputs);
  };
  g.runQuiet = async (code: string) => {
    const future = kernel.requestExecute({ code, silent: false, store_history: false });
    const printed: string[] = [];
    let error: string | null = null;
    future.onIOPub = (msg) => {
      const content = msg.content as { text?: string; ename?: string; evalue?: string };
      if (msg.header.msg_type === "stream") printed.push(content.text ?? "");
      if (msg.header.msg_type === "error") error = `${content.ename}: ${content.evalue}`;
    };
    await future.done;
    if (error !== null) throw new Error(error);
    return printed.join("");
  };
  g.restartKernel = async () => {
    await kernel.restart();
  };
  g.labKernelId = kernel.id;
}

const globals = window as unknown as LabPageGlobals;
globals.jsRenders = 0;
boot(globals).catch((err: unknown) => {
  globals.labError = err instanceof Error ? `${err.message}\n${err.stack ?? ""}` : String(err);
  console.error("lab page failed to boot", err);
});
