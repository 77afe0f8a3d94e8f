/**
 * Which folders a client of the embedded endpoint may use (`[access]`). Pure.
 */

/**
 * Whether `node` may sync `folder`: a folder listed in `access` is open to the clients named
 * there only; a folder not listed is open to every client.
 */
export function isFolderAllowed(access: Readonly<Record<string, readonly string[]>>, folder: string, node: string): boolean {
  if (!Object.hasOwn(access, folder)) return true;
  return access[folder]!.includes(node);
}
