// SupabaseRealtime: see docs/ARCHITECTURE.md.
