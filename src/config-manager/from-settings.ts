/** The users source the settings name: users.url (HTTP) or users.file; undefined when neither is set. */
import type { Settings } from '../settings.js';
import { FileUsersSource } from './file-source.js';
import { HttpUsersSource } from './http-source.js';
import type { UsersSource } from './source.js';

export function usersSource(users: Settings['users']): UsersSource | undefined {
  if (users.url) {
    return new HttpUsersSource({ url: users.url, pollMs: users.pollMs, timeoutMs: users.timeoutMs, token: users.token, tokenFile: users.tokenFile, caFile: users.caFile });
  }
  return users.file ? new FileUsersSource(users.file) : undefined;
}
