export interface TestSshd {
    host: string;
    port: number;
    user: string;
    dir: string;
    /** Private key file (OpenSSH format, no passphrase) that this sshd accepts. */
    clientKeyPath: string;
    /** A known_hosts file that contains this sshd's host key as `[127.0.0.1]:PORT ssh-ed25519 ...`. */
    knownHostsPath: string;
    /** "ssh-ed25519 AAAA..." (no comment). */
    hostPublicKey: string;
    /** Appends a public key line ("ssh-ed25519 AAAA... comment") to authorized_keys. */
    authorizeKey(publicKeyLine: string): void;
    /** The listening sshd's PID (its per-connection processes are its descendants). */
    pid: number;
    /** What sshd has written to stderr so far (its log; capped at 256 KiB). */
    log(): string;
    /** SIGTERMs the sshd this fixture started (and its per-connection children), by PID; waits for exit. */
    stop(): Promise<void>;
}
export interface GeneratedKey {
    privateKeyPath: string;
    publicKeyPath: string;
    /** "ssh-ed25519 AAAA... comment" */
    publicKeyLine: string;
}
/** A TCP port on 127.0.0.1 that was free a moment ago. */
export declare function freePort(): Promise<number>;
/** Generates an unencrypted key pair with ssh-keygen at `privateKeyPath` (+ ".pub"). */
export declare function generateKey(privateKeyPath: string, type?: 'ed25519' | 'ecdsa' | 'rsa', comment?: string): Promise<GeneratedKey>;
/** Starts a private sshd. `dir` (created if needed) holds all its files; default: a fresh temp dir. */
export declare function startSshd(opts?: {
    dir?: string;
    /** The host key's type (default ed25519). */
    hostKeyType?: 'ed25519' | 'ecdsa' | 'rsa';
    /** A CA private key: the host key gets a host certificate for 127.0.0.1 signed by it (HostCertificate). */
    hostCertificateCa?: string;
    /** More sshd_config lines. */
    extraConfig?: string[];
}): Promise<TestSshd>;
