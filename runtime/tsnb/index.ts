// `import { display } from "tsnb"` inside a notebook. The runtime creates the one library instance and
// publishes it on globalThis before any cell runs; this module re-exports that instance, so the imported
// functions are identical to the cell globals (and a second copy of this file changes nothing).

import { API_KEY, type Tsnb } from "./api.js";

export type {
  Binary,
  ClearOutputOptions,
  DisplayFunction,
  DisplayHandle,
  DisplayOptions,
  InputFunction,
  Tsnb,
} from "./api.js";

function instance(): Tsnb {
  const api = (globalThis as { [API_KEY]?: Tsnb })[API_KEY];
  if (!api) throw new Error('The "tsnb" library only works inside a tsnb kernel (no runtime found in this process).');
  return api;
}

const api = instance();

export const display = api.display;
export const input = api.input;
export const clearOutput = api.clearOutput;
export const toMimeBundle = api.toMimeBundle;
export default api;

// Comms with the browser (issue 3): the runtime's one instance, and the classes to use with it.
export { CommsClosedError, CommsTimeoutError, SyncedVariable } from "./comms/comms.js";
export { RpcCode, RpcError } from "./comms/comms.js";
export type { CallFrontendOptions, RpcHandler } from "./comms/comms.js";
export type { Comms, ListenOptions, ReadOptions, SyncedVariableOptions, WaitOptions } from "./comms/comms.js";
import { COMMS_KEY, type Comms as CommsApi } from "./comms/comms.js";
export const comms = (globalThis as { [COMMS_KEY]?: CommsApi })[COMMS_KEY] as CommsApi;

// Widgets (issue 4): views in the browser, state and callbacks in this program.
export * from "./widgets/index.js";
