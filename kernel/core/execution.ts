// What the core needs from the execution layer (kernel/execution implements it with a user-program
// process; core tests use a fake). Reply contents are complete: the core only adds nothing but routing.

import type {
  CompleteRequestContent,
  ExecuteRequestContent,
  InspectRequestContent,
  JsonObject,
  JupyterMessage,
} from "../../protocol/jupyter.js";

export interface ExecuteContext {
  request: JupyterMessage<ExecuteRequestContent>;
  /** Publishes on iopub with `request` as the parent. */
  publish(msgType: string, content: JsonObject): void;
}

export interface Execution {
  /** Runs one cell. Called one at a time, in arrival order. Resolves to execute_reply content. */
  execute(ctx: ExecuteContext): Promise<JsonObject>;
  complete(content: CompleteRequestContent): Promise<JsonObject>;
  inspect(content: InspectRequestContent): Promise<JsonObject>;
  /** Interrupts the running cell, if any. Never blocks. */
  interrupt(): void;
  /** An input_reply that arrived on stdin. */
  inputReply(message: JupyterMessage): void;
  /** Stops the user program; pending work is rejected. Idempotent. */
  dispose(): Promise<void>;
}
