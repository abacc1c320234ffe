/**
 * Kept for existing imports (test/integration/agent.test.ts): the namespace lab lives in netns.ts.
 */
export * from './netns.js';
