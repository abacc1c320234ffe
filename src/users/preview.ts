/**
 * Pure: a short JSON-like preview of a value from a users document, for error
 * messages. Built iteratively with a budget: a hostile document can nest
 * arrays a million deep (JSON.parse takes that; JSON.stringify and any
 * recursive walk overflow the stack) or hold a million keys or characters.
 */
const MAX = 60;

type Piece = { text: string } | { value: unknown };

export function preview(value: unknown, max = MAX): string {
  let out = '';
  // What is still to be written, the next piece last.
  const todo: Piece[] = [{ value }];
  while (todo.length > 0 && out.length <= max) {
    const piece = todo.pop()!;
    if ('text' in piece) {
      out += piece.text;
      continue;
    }
    const v = piece.value;
    if (typeof v === 'string') {
      out += JSON.stringify(v.length > max ? v.slice(0, max + 1) : v);
    } else if (Array.isArray(v)) {
      // Every item writes at least a character, so more than `max` cannot be shown.
      out += '[';
      todo.push({ text: ']' });
      for (let i = Math.min(v.length, max + 1) - 1; i >= 0; i--) {
        todo.push({ value: v[i] });
        if (i > 0) todo.push({ text: ',' });
      }
    } else if (typeof v === 'object' && v !== null) {
      out += '{';
      const entries: Piece[] = [];
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        if (entries.length > 0) entries.push({ text: ',' });
        entries.push({ text: `${JSON.stringify(key.length > max ? key.slice(0, max + 1) : key)}:` }, { value: (v as Record<string, unknown>)[key] });
        if (entries.length > max) break;
      }
      todo.push({ text: '}' });
      for (let i = entries.length - 1; i >= 0; i--) todo.push(entries[i]!);
    } else {
      out += String(v);
    }
  }
  return out.length > max || todo.length > 0 ? `${out.slice(0, max)}…` : out;
}
