/** The users source the settings name: users.url (HTTP) or users.file; undefined when neither is set. */
import type { Settings } from '../settings.js';
import { FileUsersSource } from './file-source.js';
import { HttpUsersSource } from './http-source.js';
import type { UsersSource } from './source.js';

export function usersSource(users: Settings['users']): UsersSource | undefined {
  if (users.url) {
    const { url, pollMs, timeoutMs, maxBytes, token, tokenFile, caFile } = users;
    return new HttpUsersSource({ url, pollMs, timeoutMs, maxBytes, token, tokenFile, caFile });
  }
  return users.file ? new FileUsersSource(users.file, undefined, users.maxBytes) : undefined;
}
