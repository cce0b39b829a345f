// JobSync: see docs/ARCHITECTURE.md.
