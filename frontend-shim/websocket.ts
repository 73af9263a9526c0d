// The WebSocket class handed to @jupyterlab/services: the same as the browser's, offering no subprotocol.
//
// Why: services first offers the `v1.kernel.websocket.jupyter.org` subprotocol. Notebook 6's server accepts the
// upgrade without answering it, so the browser fails that handshake ("Sent non-empty 'Sec-WebSocket-Protocol'
// header but no response was received") after the server has already registered the connection; services then
// reconnects without a subprotocol under the same session id, and the server "replaces a stale connection" and
// restores the old one's buffered channels. Under load, a page whose connection went through that path was seen
// to get no answer from the kernel at all (not even to kernel_info) for a minute. The legacy wire format that a
// connection without a subprotocol uses is served by every Jupyter server (jupyter_server 2 included), so the
// first attempt succeeds everywhere and there is no replaced connection.
export class LegacyProtocolWebSocket extends WebSocket {
  constructor(url: string | URL, _protocols?: string | string[]) {
    super(url);
  }
}
