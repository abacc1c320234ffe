/** `to` (a larger typed array of the same kind) holding `from`'s values first: how the per-slot arrays grow. */
export function grown<T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}
