/**
 * Persistent state on local disk: small lowdb JSON files and a sharded persistent map.
 *
 * lowdb gives the interface (an `Adapter<T>` with `read()`/`write()`); the stores in `state/` add what lowdb
 * lacks: atomic *and durable* writes (temp file, fsync, rename, fsync of the directory), private
 * file modes, coalesced writes, and for large maps shards plus an append-only journal, so that a
 * change costs one appended line instead of a rewrite.
 *
 * Durability contract shared by every store here: `flush()` resolves once everything changed
 * before the call is on disk (fsynced, renamed into place, directory fsynced; or appended to a
 * journal and fdatasynced). A crash at any moment leaves each JSON file either at its old or at
 * its new content, never half of one; a journal may end in a torn line, which is dropped on load.
 *
 * The pieces: `state/atomicfile.ts` (private directories, atomic durable JSON files),
 * `state/coalescer.ts` (one save for many changes), `state/jsonstore.ts` (one small JSON file),
 * `state/shardedmap.ts` (a large map in shard files plus a journal), `state/errors.ts`.
 */
export { AtomicJsonFile, ensurePrivateDir, ensureSocketDir, writeFileAtomic } from './state/atomicfile.js';
export { Coalescer } from './state/coalescer.js';
export { PersistenceError, StateCorruptError, StoreClosedError, type OnCorrupt } from './state/errors.js';
export { JsonStore, type JsonStoreOptions, type StoreOptions } from './state/jsonstore.js';
export { hashKey, ShardedMap, type ShardedMapOptions, type ValueCodec } from './state/shardedmap.js';
