// Lint rules for the whole repository (`npm run lint`): typescript-eslint's recommended rules, plus the
// type-aware promise rules, so that a floating or misused promise is an error. Formatting is Prettier's
// (`.prettierrc.json`), checked by `npm run lint` too.
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**', 'services/api/dashboard/public/**', '**/*.cjs', '**/*.js', '**/*.mjs', '**/.*-tmp.ts'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  prettier,
);
