// SupabaseLocal: see docs/ARCHITECTURE.md.
