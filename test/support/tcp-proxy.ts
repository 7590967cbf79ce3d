/**
 * A TCP relay between a test's client and a server, which the test can hold:
 * what the client sends stays in the relay (unanswered, as in a server that
 * froze), its connections can be cut, and while it is closed it accepts new
 * connections and keeps them waiting until it opens again. So a client
 * reconnects at once, whatever the server behind does meanwhile (a restart,
 * a restore), as it would behind a platform's proxy.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

interface Pair {
  client: Socket;
  server: Socket | undefined;
}

export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private readonly server: Server;
  private open = true;
  private holding = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.accept(client));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
  }

  /** What clients send from now on stays here: nothing reaches the server, nothing is answered. */
  hold(): void {
    this.holding = true;
    for (const { client } of this.pairs) {
      client.unpipe();
      client.pause();
    }
  }

  /** Cuts every connection; new ones are accepted and wait until open(). */
  cutAndClose(): void {
    this.open = false;
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.server?.destroy();
    }
    this.pairs.clear();
  }

  /** Connects the waiting connections (and every new one) to the server, and relays again. */
  reopen(): void {
    this.open = true;
    this.holding = false;
    for (const pair of this.pairs) if (!pair.server) this.relay(pair);
  }

  /** The connections waiting for the relay to open. */
  get waiting(): number {
    return [...this.pairs].filter((pair) => !pair.server).length;
  }

  async close(): Promise<void> {
    this.cutAndClose();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const pair: Pair = { client, server: undefined };
    this.pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => {
      pair.server?.destroy();
      this.pairs.delete(pair);
    });
    // Not relayed yet: what it sends waits in the socket.
    client.pause();
    if (this.open) this.relay(pair);
  }

  private relay(pair: Pair): void {
    const server = connect(this.target.port, this.target.host);
    pair.server = server;
    server.on('error', () => pair.client.destroy());
    server.on('close', () => pair.client.destroy());
    server.on('connect', () => {
      server.pipe(pair.client);
      if (!this.holding) pair.client.pipe(server);
    });
  }
}
