export * from './node-id.js';
export * from './agent-messages.js';
export * from './node-event.js';
export * from './refusal.js';
export * from './canary.js';
