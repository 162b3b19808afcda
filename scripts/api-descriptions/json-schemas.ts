import { z } from 'zod';

export interface NamedSchema {
  schema: z.ZodType;
  /** The component's description (a field's own description comes from its zod `.meta()`). */
  description: string;
}

/**
 * The zod schemas as JSON Schema components that refer to each other by `#/components/schemas/<name>`: a schema
 * listed here is referred to wherever another one contains it, so `NodeId` is stated once.
 * `draft-2020-12` is OpenAPI 3.1's dialect; `draft-7` is the base of AsyncAPI 3's default schema format.
 */
export function componentSchemas(named: Record<string, NamedSchema>, target: 'draft-2020-12' | 'draft-7'): Record<string, Record<string, unknown>> {
  const registry = z.registry<{ id: string }>();
  for (const [id, { schema }] of Object.entries(named)) registry.add(schema, { id });
  // Requests and messages are described as they are accepted (io: 'input'); the answers are strict objects, the same either way.
  const { schemas } = z.toJSONSchema(registry, { target, io: 'input', uri: (id) => `#/components/schemas/${id}` });
  const components: Record<string, Record<string, unknown>> = {};
  for (const [id, { description }] of Object.entries(named)) {
    // Each component lives inside the description document: no dialect or id of its own.
    const { $schema: _dialect, $id: _id, ...schema } = schemas[id] as Record<string, unknown>;
    components[id] = { description, ...schema };
  }
  return components;
}
