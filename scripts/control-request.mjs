// One JSON-RPC request on a daemon's control socket (`<state_dir>/control.sock`), as the CLI
// sends it: used by the test harness and the benchmarks, which talk to daemons directly.
import net from 'node:net';

/**
 * Send `method` with empty params and resolve with the result; reject with the error message
 * the daemon answers, on a socket error, or after `timeoutMs`. `label` prefixes the messages.
 */
export function controlRequest(socketPath, method, timeoutMs, label) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffer = '';
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`${label} ${method}: no answer in ${timeoutMs} ms`))), timeoutMs);
    socket.once('error', (err) => (clearTimeout(timer), reject(err)));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const newline = buffer.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      socket.destroy();
      const reply = JSON.parse(buffer.slice(0, newline));
      if (reply.error !== undefined) reject(new Error(`${label} ${method}: ${reply.error.message}`));
      else resolve(reply.result);
    });
    socket.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: {} }) + '\n');
  });
}
