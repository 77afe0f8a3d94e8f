export declare function controlRequest(socketPath: string, method: string, timeoutMs: number, label: string): Promise<unknown>;
