import tseslint from 'typescript-eslint';

// What actors/ (contracts, deciders, shells) may never import: imports point inward.
const OUTSIDE_ACTORS = [
  '**/system/**',
  '**/persistence/**',
  '**/api/**',
  '**/simulations/**',
  'nact',
  'nact/*',
  '@nats-io/*',
  '@mikro-orm/*',
];

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
    // Only the adapter touches nact (unmaintained): its internals in one place.
    files: ['**/*.ts'],
    ignores: ['system/nact-adapter.ts', 'test/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['nact', 'nact/*'] }],
    },
  },
  {
    // Imports point inward: actors/ (contracts, deciders, shells) imports nothing outside it.
    files: ['actors/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: OUTSIDE_ACTORS }],
    },
  },
  {
    // Deciders are pure: no I/O layers, no wall clock.
    files: ['actors/domain/**/*.ts', 'actors/*/decider.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: OUTSIDE_ACTORS }],
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
