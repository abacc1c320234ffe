/**
 * Credentials written into a URL (`http://user:secret@host/`) never reach
 * output: what a URL looks like in logs and `check` lines, with the userinfo
 * replaced. Works on text that does not parse as a URL too, since the
 * settings error that shows a bad `users.url` is one of the places it appears.
 */
const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i;

export function redactUrl(text: string): string {
  return text.replace(USERINFO, '$1***@');
}
