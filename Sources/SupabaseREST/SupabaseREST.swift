// SupabaseREST: see docs/ARCHITECTURE.md.
