import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.tap/**', 'bench-results/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'TSEnumDeclaration', message: 'Use const objects, not enums.' },
      ],
    },
  },
  {
    // Deciders are pure: no I/O layers, no wall clock.
    files: ['actors/domain/**/*.ts', 'actors/*/decider.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            '**/system/**',
            '**/persistence/**',
            '**/api/**',
            'nact',
            '@nats-io/*',
            '@mikro-orm/*',
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date']", message: 'Inject the time.' },
        {
          selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
          message: 'Inject the time.',
        },
      ],
    },
  },
);
