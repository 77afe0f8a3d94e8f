/** The shapes SshSession transfers take and return: remote stats, results, upload and download options. */

export interface RemoteStat {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  /** Permission bits only. */
  mode: number;
  /** Modification time in ms (SFTP v3 carries whole seconds). */
  mtimeMs: number;
}

export interface TransferResult {
  /** sha256 of the bytes transferred, lowercase hex. */
  hash: string;
  size: number;
}

export interface UploadOptions {
  onProgress?(done: number, total: number): void;
  signal?: AbortSignal;
  /** Ask the server to fsync the file before closing it (fsync@openssh.com). Default false. */
  fsync?: boolean;
}

export interface DownloadOptions {
  /** sha256 (hex) the content must have; otherwise HashMismatchError and the local file is removed. */
  expectedHash?: string;
  /**
   * The size the remote file is expected to have. For a small file it saves the remote fstat and
   * lets the reads and the close go out together. A shorter file is downloaded whole (and then
   * fails `expectedHash`, if given); a longer one is never read past this size plus one byte: it
   * fails with SizeExceededError, whatever size the server's fstat claims.
   */
  expectedSize?: number;
  /** Without `expectedSize`: the most bytes to accept; a longer file fails with SizeExceededError. */
  maxSize?: number;
  onProgress?(done: number, total: number): void;
  signal?: AbortSignal;
  /** fsync the local file before resolving. Default false. */
  fsync?: boolean;
}
